//! The account registry and identity resolution: who is behind a post, an
//! open or a ticket.
//!
//! An actor (an e-mail address or a per-source handle) resolves to one of
//! three things: a customer account, the vendor's own staff (never counted),
//! or nobody known (counted as *unmatched* so the mapping can be fixed).

use std::collections::BTreeMap;
use std::path::Path;

// Looked up for every imported line: a fast hash (keys come from the
// accounts file and the config).
use foldhash::{HashMap, HashMapExt, HashSet};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::IdentityConfig;
use crate::diag::{Diagnostic, Diagnostics, SourceText};
use crate::types::AccountId;

#[derive(Debug, Deserialize)]
struct RawFile {
    #[serde(default)]
    account: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
struct RawAccount {
    id: Spanned<String>,
    name: Spanned<String>,
    csm: Spanned<String>,
    segment: Option<String>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    emails: Vec<Spanned<String>>,
    #[serde(default)]
    handles: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl RawAccount {
    /// The same account with every span `by` bytes later.
    fn shifted(self, by: usize) -> RawAccount {
        fn mv<T>(s: Spanned<T>, by: usize) -> Spanned<T> {
            let r = s.span();
            Spanned::new(r.start + by..r.end + by, s.into_inner())
        }
        let all = |v: Vec<Spanned<String>>| v.into_iter().map(|s| mv(s, by)).collect();
        RawAccount {
            id: mv(self.id, by),
            name: mv(self.name, by),
            csm: mv(self.csm, by),
            segment: self.segment,
            domains: all(self.domains),
            emails: all(self.emails),
            handles: self.handles.into_iter().map(|(k, v)| (k, all(v))).collect(),
            labels: self.labels,
        }
    }
}

/// Accounts per part when a large accounts file is parsed in parts.
const PART_ACCOUNTS: usize = 2000;

/// Parses a large accounts file part by part and hands each part's
/// accounts to `on_part` as it goes, so memory follows a part and not the
/// file (a TOML parser's tree of 100,000 accounts took 350 MiB for a
/// 7.5 MB file, and holding every parsed account until all were checked
/// another ~30 MB beside the registry built from them). A part is a run of
/// `[[account]]` tables, parsed alone; its spans and the lines of its
/// diagnostics are then moved to the file's. (A part once carried the
/// file's lines before it as newlines, so that its lines were the file's:
/// the parser's tokens for those newlines made the last part cost 36 MB.)
///
/// Returns the parser's own diagnostics, or `None` when the file is small
/// or cannot be cut safely (a part that does not parse alone): then the
/// whole file is to be parsed at once, and whatever `on_part` was handed
/// before is to be thrown away. `on_part` is told the number of accounts
/// in the file with each part.
fn parse_in_parts(
    src: &SourceText,
    mut on_part: impl FnMut(usize, Vec<RawAccount>),
) -> Option<Vec<Diagnostic>> {
    let text = &src.text;
    // Each header's offset, and the lines before it.
    let mut headers = Vec::new();
    let mut at = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "[[account]]" {
            headers.push((at, n));
        }
        at += line.len();
    }
    if headers.len() <= PART_ACCOUNTS {
        return None;
    }
    let mut cuts: Vec<(usize, usize)> = headers.iter().step_by(PART_ACCOUNTS).copied().collect();
    cuts[0] = (0, 0);
    cuts.push((text.len(), 0));
    let mut problems = Vec::new();
    for w in cuts.windows(2) {
        let ((start, lines_before), (end, _)) = (w[0], w[1]);
        let part = SourceText::new(&src.path, text[start..end].to_string());
        match part.parse_toml::<RawFile>() {
            Ok((raw, p)) => {
                // Offsets and lines in the part, moved to the file's (a
                // part starts a line: columns stay).
                let part = raw.account.into_iter().map(|a| a.shifted(start));
                on_part(headers.len(), part.collect());
                problems.extend(p.into_iter().map(|mut d| {
                    if d.line > 0 {
                        d.line += lines_before;
                    }
                    d
                }));
            }
            // A cut inside a multi-line string, or a real syntax error:
            // the whole file says which.
            Err(_) => return None,
        }
    }
    Some(problems)
}

/// A customer organisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    /// The Customer Success Manager who receives this account's alerts.
    pub csm: String,
    /// Optional grouping (tier, region, product line) for per-segment
    /// thresholds and reports.
    pub segment: Option<String>,
    pub domains: Vec<String>,
    pub emails: Vec<String>,
    pub handles: BTreeMap<String, Vec<String>>,
    /// Free labels (`labels = { region = "eu" }`) that alert routes match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What an actor turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A customer account, by its index in the registry.
    Account(usize),
    /// The vendor's own staff: never counted as customer activity.
    Staff,
    /// Nobody the accounts file knows.
    Unmatched,
}

/// All accounts, indexed for fast identity resolution.
#[derive(Debug, Default)]
pub struct Registry {
    accounts: Vec<Account>,
    by_id: IdIndex,
    by_email: HashMap<String, usize>,
    by_domain: HashMap<String, usize>,
    /// source name → lower-cased handle → account.
    by_handle: HashMap<String, HashMap<String, usize>>,
    staff_emails: HashSet<String>,
    staff_domains: HashSet<String>,
    staff_handles: HashMap<String, HashSet<String>>,
}

impl Registry {
    /// Reads and validates the accounts file; every problem is reported.
    pub fn load(path: &Path, identity: &IdentityConfig) -> Result<Registry, Diagnostics> {
        let src = SourceText::read(path).map_err(|d| Diagnostics(vec![d]))?;
        Registry::from_source(src, identity)
    }

    /// Validates accounts text as if read from `path`.
    pub fn from_text(
        path: &Path,
        text: String,
        identity: &IdentityConfig,
    ) -> Result<Registry, Diagnostics> {
        Registry::from_source(SourceText::new(path, text), identity)
    }

    fn from_source(src: SourceText, identity: &IdentityConfig) -> Result<Registry, Diagnostics> {
        let mut b = Builder::new(&src, identity);
        let parsed = parse_in_parts(&src, |all, part| {
            b.reserve(all);
            part.into_iter().for_each(|a| b.add(a));
        });
        let parse_problems = match parsed {
            Some(problems) => problems,
            None => {
                // Parsed whole: whatever a part added before is dropped.
                let (raw, problems): (RawFile, Vec<Diagnostic>) = src.parse_toml()?;
                b = Builder::new(&src, identity);
                b.reserve(raw.account.len());
                raw.account.into_iter().for_each(|a| b.add(a));
                problems
            }
        };
        // The parser's diagnostics first, then the accounts', in file order.
        let (registry, mut problems) = (b.reg, parse_problems);
        problems.extend(b.problems);
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(Diagnostics(problems))
        }
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    pub fn get(&self, idx: usize) -> &Account {
        &self.accounts[idx]
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The index of the account with this id.
    pub fn by_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(&self.accounts, id)
    }

    /// Resolves an actor seen on `source`: a handle of that source, or an
    /// e-mail address (exact address first, then its domain and parent
    /// domains, so `bob@mail.acme.com` belongs to `acme.com`).
    ///
    /// Staff always win over customers at the same level of precision: a
    /// listed staff address is never a customer's.
    pub fn resolve(&self, source: &str, actor: &str) -> Resolved {
        let actor = actor.trim();
        let lower;
        let key = if actor.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = actor.to_lowercase();
            lower.as_str()
        } else {
            actor
        };
        if self
            .staff_handles
            .get(source)
            .is_some_and(|s| s.contains(key))
        {
            return Resolved::Staff;
        }
        if let Some(&idx) = self.by_handle.get(source).and_then(|m| m.get(key)) {
            return Resolved::Account(idx);
        }
        let Some((_, domain)) = key.rsplit_once('@') else {
            return Resolved::Unmatched;
        };
        if self.staff_emails.contains(key) {
            return Resolved::Staff;
        }
        if let Some(&idx) = self.by_email.get(key) {
            return Resolved::Account(idx);
        }
        let mut d = domain;
        loop {
            if self.staff_domains.contains(d) {
                return Resolved::Staff;
            }
            if let Some(&idx) = self.by_domain.get(d) {
                return Resolved::Account(idx);
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => return Resolved::Unmatched,
            }
        }
    }
}

/// Builds the registry one parsed account at a time, checking each.
struct Builder<'s> {
    src: &'s SourceText,
    reg: Registry,
    problems: Vec<Diagnostic>,
    /// Where each claimed identity (domain, address, handle) was first
    /// defined, for "also claimed at line N" messages.
    first_line: HashMap<String, usize>,
    /// Each account's line, for "duplicate account id" messages.
    id_lines: Vec<usize>,
}

impl<'s> Builder<'s> {
    fn new(src: &'s SourceText, identity: &IdentityConfig) -> Self {
        let reg = Registry {
            staff_emails: identity
                .ignore_emails
                .iter()
                .map(|e| e.get_ref().to_lowercase())
                .collect(),
            staff_domains: identity
                .ignore_domains
                .iter()
                .map(|d| normalise_domain(d.get_ref()))
                .collect(),
            staff_handles: identity
                .ignore_handles
                .iter()
                .map(|(s, hs)| (s.clone(), hs.iter().map(|h| h.to_lowercase()).collect()))
                .collect(),
            ..Registry::default()
        };
        Builder {
            src,
            reg,
            problems: Vec::new(),
            first_line: HashMap::new(),
            id_lines: Vec::new(),
        }
    }

    /// Room for `all` accounts in all: the registry is held as long as
    /// lull runs, so it is exactly as large as the file.
    fn reserve(&mut self, all: usize) {
        let more = all.saturating_sub(self.reg.accounts.len());
        self.reg.accounts.reserve_exact(more);
        self.id_lines.reserve_exact(more);
    }

    /// Checks one account and adds it; what is wrong goes to `problems`.
    fn add(&mut self, a: RawAccount) {
        let src = self.src;
        let line_of = |s: &Spanned<String>| src.line_col(s.span().start).0;
        let idx = self.reg.accounts.len();
        let id = a.id.get_ref().trim();
        let mut new_id = false;
        if id.is_empty() {
            self.problems.push(src.span(&a.id, "account `id` is empty"));
        } else if let Some(bad) = id.chars().find(|c| c.is_control()) {
            self.problems.push(src.span(
                &a.id,
                format!(
                    "account id `{}` contains a control character ({:?})",
                    id, bad
                ),
            ));
        } else if let Some(other) = self.reg.by_id.get(&self.reg.accounts, id) {
            self.problems.push(src.span(
                &a.id,
                format!(
                    "duplicate account id `{id}` (first defined at line {})",
                    self.id_lines[other]
                ),
            ));
        } else {
            new_id = true;
        }
        if a.name.get_ref().trim().is_empty() {
            self.problems
                .push(src.span(&a.name, format!("account `{id}` has an empty `name`")));
        }
        if !is_plausible_email(a.csm.get_ref()) {
            self.problems.push(src.span(
                &a.csm,
                format!(
                    "account `{id}`: csm `{}` is not an e-mail address (expected name@domain)",
                    a.csm.get_ref()
                ),
            ));
        }
        let mut domains = Vec::new();
        for d in &a.domains {
            let dn = normalise_domain(d.get_ref());
            if !is_plausible_domain(&dn) {
                self.problems.push(src.span(
                    d,
                    format!("account `{id}`: `{}` is not an e-mail domain", d.get_ref()),
                ));
                continue;
            }
            if self.reg.staff_domains.contains(&dn) {
                self.problems.push(src.span(
                    d,
                    format!(
                        "account `{id}`: domain `{dn}` is also in identity.ignore_domains (staff)"
                    ),
                ));
            }
            if let Some((other, line)) = claim(
                &mut self.reg.by_domain,
                &mut self.first_line,
                "domain",
                &dn,
                idx,
                line_of(d),
            ) {
                self.problems.push(src.span(
                    d,
                    format!(
                        "domain `{dn}` is claimed by account `{id}` and by account `{}` (line {line}); a domain maps to one account",
                        self.reg.accounts[other].id
                    ),
                ));
            }
            domains.push(dn);
        }
        let mut emails = Vec::new();
        for e in &a.emails {
            let en = e.get_ref().trim().to_lowercase();
            if !is_plausible_email(&en) {
                self.problems.push(src.span(
                    e,
                    format!("account `{id}`: `{}` is not an e-mail address", e.get_ref()),
                ));
                continue;
            }
            if let Some((other, line)) = claim(
                &mut self.reg.by_email,
                &mut self.first_line,
                "email",
                &en,
                idx,
                line_of(e),
            ) {
                self.problems.push(src.span(
                    e,
                    format!(
                        "e-mail `{en}` is claimed by account `{id}` and by account `{}` (line {line})",
                        self.reg.accounts[other].id
                    ),
                ));
            }
            emails.push(en);
        }
        let mut handles = BTreeMap::new();
        for (source, hs) in &a.handles {
            let mut list = Vec::new();
            for h in hs {
                let hn = h.get_ref().trim().to_lowercase();
                if hn.is_empty() {
                    self.problems.push(src.span(
                        h,
                        format!("account `{id}`: empty handle for source `{source}`"),
                    ));
                    continue;
                }
                let map = self.reg.by_handle.entry(source.clone()).or_default();
                let tag = format!("handle:{source}");
                if let Some((other, line)) =
                    claim(map, &mut self.first_line, &tag, &hn, idx, line_of(h))
                {
                    self.problems.push(src.span(
                        h,
                        format!(
                            "handle `{hn}` on source `{source}` is claimed by account `{id}` and by account `{}` (line {line})",
                            self.reg.accounts[other].id
                        ),
                    ));
                }
                list.push(h.get_ref().trim().to_string());
            }
            handles.insert(source.clone(), list);
        }
        self.reg.accounts.push(Account {
            id: AccountId(id.to_string()),
            name: a.name.get_ref().trim().to_string(),
            csm: a.csm.get_ref().trim().to_string(),
            segment: a
                .segment
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            domains,
            emails,
            handles,
            labels: a.labels,
        });
        if new_id {
            self.reg.by_id.insert(&self.reg.accounts, idx);
        }
        self.id_lines.push(line_of(&a.id));
    }
}

/// Account id → registry index, each id held once (in the accounts): a
/// table of indices, hashed by the id each points to. A map keyed by the
/// ids kept a second copy of every id (~40 bytes an account).
#[derive(Default)]
struct IdIndex {
    table: hashbrown::HashTable<usize>,
    hasher: foldhash::fast::RandomState,
}

impl IdIndex {
    /// The one hash of an id, for looking up and for placing alike.
    fn hash(hasher: &foldhash::fast::RandomState, id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(hasher, id)
    }

    fn get(&self, accounts: &[Account], id: &str) -> Option<usize> {
        self.table
            .find(Self::hash(&self.hasher, id), |&i| accounts[i].id.0 == id)
            .copied()
    }

    /// Indexes `accounts[idx]` by its id (not indexed yet).
    fn insert(&mut self, accounts: &[Account], idx: usize) {
        let hasher = &self.hasher;
        let hash = |i: &usize| Self::hash(hasher, accounts[*i].id.as_str());
        self.table.insert_unique(hash(&idx), idx, hash);
    }
}

impl std::fmt::Debug for IdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdIndex({} ids)", self.table.len())
    }
}

/// Claims `key` (a domain, address or handle) for account `idx`, first
/// come first served. Returns the other account and the line where it
/// claimed the key, if it is already another account's.
fn claim(
    map: &mut HashMap<String, usize>,
    first_line: &mut HashMap<String, usize>,
    tag: &str,
    key: &str,
    idx: usize,
    line: usize,
) -> Option<(usize, usize)> {
    let where_ = format!("{tag}:{key}");
    match map.get(key) {
        Some(&other) if other != idx => {
            Some((other, first_line.get(&where_).copied().unwrap_or(0)))
        }
        Some(_) => None,
        None => {
            map.insert(key.to_string(), idx);
            first_line.insert(where_, line);
            None
        }
    }
}

fn normalise_domain(d: &str) -> String {
    d.trim()
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_lowercase()
}

/// A domain name with at least two labels, each of letters, digits and `-`.
pub fn is_plausible_domain(d: &str) -> bool {
    let d = normalise_domain(d);
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Mail providers whose domain says nothing about the company a person
/// works for: map such addresses one by one (`emails`), never the domain.
pub const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "fastmail.com",
];

/// Is `domain` a public mail provider's ([`PUBLIC_MAIL_DOMAINS`])?
pub fn is_public_mail_domain(domain: &str) -> bool {
    let d = normalise_domain(domain);
    PUBLIC_MAIL_DOMAINS.iter().any(|p| d == *p)
}

/// `local@domain` with a plausible domain and no spaces or angle brackets.
pub fn is_plausible_email(e: &str) -> bool {
    let e = e.trim();
    match e.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !local
                    .chars()
                    .any(|c| c.is_whitespace() || "<>@,;\"".contains(c))
                && is_plausible_domain(domain)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn registry(accounts: &str, identity: &str) -> Result<Registry, Diagnostics> {
        let dir = tempfile::tempdir().unwrap();
        let ip = dir.path().join("lull.toml");
        std::fs::write(&ip, identity).unwrap();
        let cfg = crate::config::Config::load(&ip).unwrap();
        let ap: PathBuf = dir.path().join("accounts.toml");
        std::fs::write(&ap, accounts).unwrap();
        Registry::load(&ap, &cfg.identity)
    }

    #[test]
    fn a_large_file_read_in_parts_reads_the_same_and_names_lines_exactly() {
        let n = PART_ACCOUNTS * 2 + 7;
        let mut text = String::from("# customers\n\n");
        for i in 0..n {
            text.push_str(&format!(
                "[[account]]\nid = \"a{i}\"\nname = \"Ünïcode {i}\"\ncsm = \"c{}@vendor.example\"\ndomains = [\"a{i}.example\"]\n\n",
                i % 3
            ));
        }
        let parts = registry(&text, "").unwrap();
        let src = SourceText::new(Path::new("accounts.toml"), text.clone());
        let (whole, _): (RawFile, _) = src.parse_toml().unwrap();
        assert_eq!(parts.len(), whole.account.len());
        assert_eq!(parts.get(n - 1).id.as_str(), format!("a{}", n - 1));
        assert_eq!(parts.by_id("a4001"), Some(4001));
        // A mistake in the last part, and a duplicate across parts: named
        // at their lines in the file.
        let bad = text
            .replace("id = \"a4005\"", "id = \"a4005\"\ncolour = \"red\"")
            .replace("id = \"a3000\"", "id = \"a1\"");
        let err = registry(&bad, "").err().unwrap().to_string();
        let line_of = |needle: &str| bad.lines().position(|l| l == needle).unwrap() + 1;
        assert!(
            err.contains(&format!(":{}:", line_of("colour = \"red\""))),
            "{err}"
        );
        assert!(err.contains("unknown key"), "{err}");
        let second_a1 = bad
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == "id = \"a1\"")
            .nth(1)
            .unwrap()
            .0
            + 1;
        assert!(err.contains(&format!(":{second_a1}:")), "{err}");
    }

    #[test]
    fn a_file_that_cannot_be_cut_is_read_whole_and_each_account_counted_once() {
        // Account 3999's name holds a line `[[account]]` that is not a
        // table header: the cut before the 4000th header falls inside the
        // string, the second part does not parse alone, and the file is
        // read whole after the first part's accounts were already built.
        let n = PART_ACCOUNTS * 2 + 7;
        let mut text = String::new();
        for i in 0..n {
            let name = if i == 3999 {
                "\"\"\"Odd\n[[account]]\nname\"\"\"".to_string()
            } else {
                format!("\"A {i}\"")
            };
            text.push_str(&format!(
                "[[account]]\nid = \"a{i}\"\nname = {name}\ncsm = \"c@vendor.example\"\n\n"
            ));
        }
        let r = registry(&text, "").unwrap();
        assert_eq!(r.len(), n);
        assert_eq!(r.by_id("a0"), Some(0));
        assert_eq!(r.by_id("a4001"), Some(4001));
        assert_eq!(r.get(3999).name, "Odd\n[[account]]\nname");
        // A duplicate is still named at the line of the first definition.
        let bad = text.replace("id = \"a4005\"", "id = \"a7\"");
        let err = registry(&bad, "").err().unwrap().to_string();
        let first = bad.lines().position(|l| l == "id = \"a7\"").unwrap() + 1;
        assert!(
            err.contains(&format!(
                "duplicate account id `a7` (first defined at line {first})"
            )),
            "{err}"
        );
        assert_eq!(err.matches("duplicate").count(), 1, "{err}");
    }

    const ACCOUNTS: &str = r#"
[[account]]
id = "acme"
name = "Acme"
csm = "jane@vendor.example"
segment = "enterprise"
domains = ["acme.com"]
emails = ["bob.acme@gmail.com"]
handles = { forum = ["BobTheBuilder"] }

[[account]]
id = "globex"
name = "Globex"
csm = "jane@vendor.example"
domains = ["globex.io"]
"#;

    #[test]
    fn subdomains_map_to_their_account() {
        let r = registry(ACCOUNTS, "").unwrap();
        let acme = r.by_id("acme").unwrap();
        assert_eq!(r.resolve("forum", "ann@acme.com"), Resolved::Account(acme));
        assert_eq!(
            r.resolve("forum", "ann@mail.acme.com"),
            Resolved::Account(acme)
        );
        assert_eq!(
            r.resolve("forum", "ann@a.b.acme.com"),
            Resolved::Account(acme)
        );
        assert_eq!(
            r.resolve("forum", "ANN@Mail.ACME.com"),
            Resolved::Account(acme)
        );
        assert_eq!(r.resolve("forum", "ann@notacme.com"), Resolved::Unmatched);
        assert_eq!(
            r.resolve("forum", "ann@acme.com.evil.org"),
            Resolved::Unmatched
        );
    }

    #[test]
    fn emails_and_handles_resolve_per_source() {
        let r = registry(ACCOUNTS, "").unwrap();
        let acme = r.by_id("acme").unwrap();
        assert_eq!(
            r.resolve("x", "Bob.Acme@gmail.com"),
            Resolved::Account(acme)
        );
        assert_eq!(r.resolve("x", "other@gmail.com"), Resolved::Unmatched);
        assert_eq!(r.resolve("forum", "bobthebuilder"), Resolved::Account(acme));
        assert_eq!(r.resolve("zendesk", "bobthebuilder"), Resolved::Unmatched);
    }

    #[test]
    fn staff_activity_is_never_a_customer() {
        let r = registry(
            ACCOUNTS,
            "[identity]\nignore_domains = [\"vendor.example\"]\nignore_emails = [\"helper@acme.com\"]\nignore_handles = { forum = [\"mod_anna\"] }\n",
        )
        .unwrap();
        assert_eq!(r.resolve("forum", "jane@vendor.example"), Resolved::Staff);
        assert_eq!(
            r.resolve("forum", "jane@eu.vendor.example"),
            Resolved::Staff
        );
        assert_eq!(r.resolve("forum", "Helper@acme.com"), Resolved::Staff);
        assert_eq!(r.resolve("forum", "mod_anna"), Resolved::Staff);
        assert!(matches!(
            r.resolve("forum", "other@acme.com"),
            Resolved::Account(_)
        ));
    }

    #[test]
    fn every_accounts_problem_is_reported_with_its_line() {
        let text = r#"[[account]]
id = "acme"
name = "Acme"
csm = "not-an-address"
domains = ["acme.com"]

[[account]]
id = "acme"
name = "Acme again"
csm = "jane@vendor.example"

[[account]]
id = "initech"
name = "Initech"
csm = "jane@vendor.example"
domains = ["ACME.com", "bad domain"]
colour = "blue"
"#;
        let err = registry(text, "").unwrap_err();
        let msgs: Vec<String> = err
            .0
            .iter()
            .map(|d| format!("{}: {}", d.line, d.message))
            .collect();
        let all = msgs.join("\n");
        assert!(all.contains("17: unknown key `account[2].colour`"), "{all}");
        assert!(
            all.contains("4: account `acme`: csm `not-an-address`"),
            "{all}"
        );
        assert!(
            all.contains("8: duplicate account id `acme` (first defined at line 2)"),
            "{all}"
        );
        assert!(all.contains("16: domain `acme.com` is claimed by account `initech` and by account `acme` (line 5)"), "{all}");
        assert!(
            all.contains("16: account `initech`: `bad domain` is not an e-mail domain"),
            "{all}"
        );
        assert_eq!(msgs.len(), 5, "{all}");
    }

    #[test]
    fn an_address_or_handle_claimed_twice_names_both_accounts() {
        let text = "[[account]]\nid = \"a\"\nname = \"A\"\ncsm = \"c@v.example\"\nemails = [\"x@gmail.com\"]\nhandles = { forum = [\"Bob\"] }\n\n[[account]]\nid = \"b\"\nname = \"B\"\ncsm = \"c@v.example\"\nemails = [\"X@gmail.com\"]\nhandles = { forum = [\"bob\"], tickets = [\"bob\"] }\n";
        let all = registry(text, "").unwrap_err().to_string();
        assert!(
            all.contains(
                ":12:11: e-mail `x@gmail.com` is claimed by account `b` and by account `a` (line 5)"
            ),
            "{all}"
        );
        assert!(all.contains(":13:22: handle `bob` on source `forum` is claimed by account `b` and by account `a` (line 6)"), "{all}");
        assert!(!all.contains("tickets"), "a handle is per source: {all}");
    }

    #[test]
    fn plausibility_checks() {
        assert!(is_plausible_email("a@b.co"));
        assert!(!is_plausible_email("Jane <a@b.co>"));
        assert!(!is_plausible_email("a@localhost"));
        assert!(is_plausible_domain("xn--bcher-kva.example"));
        assert!(!is_plausible_domain("-a.com"));
    }
}
