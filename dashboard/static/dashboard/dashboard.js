// Postwerk dashboard: the little script there is. Everything works without it except copying to the clipboard.
(function () {
  "use strict";
  var live = function (text) {
    var region = document.getElementById("live");
    if (region) { region.textContent = ""; setTimeout(function () { region.textContent = text; }, 50); }
  };

  function fallbackCopy(text) {
    // navigator.clipboard needs a secure context; plain http on a LAN host gets the older route.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) { return; }
    var text = button.getAttribute("data-copy") || "";
    var copy = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); })
      : fallbackCopy(text);
    var label = button.textContent;
    copy.then(function () {
      button.textContent = "Copied";
      button.classList.add("copied");
      live("Copied to the clipboard");
    }, function () {
      button.textContent = "Select and copy";
      live("Could not copy; select the text and copy it");
    }).then(function () {
      setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 2000);
    });
  });

  // Forms with data-confirm ask first (destructive actions: revoke, delete, lift).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
