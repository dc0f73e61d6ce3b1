// lull's console works without JavaScript; this only adds "Copy" buttons
// next to the accounts-file lines and TOML snippets.
(function () {
  "use strict";
  if (!navigator.clipboard || !window.isSecureContext) {
    return;
  }
  document.querySelectorAll("code.copy, pre.copy").forEach(function (el) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "small copy-btn";
    b.textContent = "Copy";
    b.setAttribute("aria-label", "Copy to the clipboard");
    b.addEventListener("click", function () {
      navigator.clipboard.writeText(el.textContent).then(
        function () { b.textContent = "Copied"; },
        function () { b.textContent = "Select and copy"; }
      );
    });
    el.insertAdjacentElement("afterend", b);
  });
})();
