//! `lull snooze ACCOUNT --until DATE --reason TEXT` and `lull unsnooze ACCOUNT`.

use std::process::ExitCode;

use super::Context;
use crate::detect::{Snooze, snoozes};
use crate::types::{AccountId, Day};

fn known(ctx: &Context, account: &str) -> anyhow::Result<AccountId> {
    match ctx.registry.by_id(account) {
        Some(i) => Ok(ctx.registry.get(i).id.clone()),
        None => anyhow::bail!(
            "no account `{account}` in {} (use the account's `id`; `lull accounts` lists them)",
            ctx.config.accounts_file.display()
        ),
    }
}

pub fn snooze(ctx: &Context, account: &str, until: Day, reason: &str) -> anyhow::Result<ExitCode> {
    let id = known(ctx, account)?;
    let today = Day::today(ctx.config.timezone);
    if until < today {
        anyhow::bail!("--until {until} is in the past (today is {today})");
    }
    let reason = reason.trim();
    if reason.is_empty() {
        anyhow::bail!("--reason must say why (it is shown in `lull accounts`)");
    }
    let s = Snooze {
        until,
        reason: reason.to_string(),
        set_at: chrono::Utc::now(),
    };
    ctx.store.set_snooze(&id, Some(&serde_json::to_vec(&s)?))?;
    tracing::info!(account = %id, %until, "account snoozed");
    eprintln!(
        "{id} snoozed until {until} (inclusive): no alert, reminder or recovery notice for it until then; if it is still quiet afterwards, its CSM hears about it"
    );
    Ok(ExitCode::SUCCESS)
}

pub fn unsnooze(ctx: &Context, account: &str) -> anyhow::Result<ExitCode> {
    let id = known(ctx, account)?;
    let was = snoozes(&ctx.store, Day(i32::MIN / 2))?.remove(&id);
    ctx.store.set_snooze(&id, None)?;
    match was {
        Some(s) => eprintln!("{id}: snooze until {} lifted", s.until),
        None => eprintln!("{id} was not snoozed"),
    }
    Ok(ExitCode::SUCCESS)
}
