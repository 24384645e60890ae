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

  // The template editor's live preview: after a pause in typing, the form goes to the preview endpoint (subject,
  // text, errors, missing variables as JSON) and, through the Preview button, to the sandboxed HTML frame.
  var editor = document.getElementById("template-form");
  if (editor && editor.getAttribute("data-preview")) {
    var timer = null;
    var previewButton = document.getElementById("preview-button");
    var show = function (id, text) { var el = document.getElementById(id); if (el) { el.textContent = text; } };
    var refresh = function () {
      var body = new FormData(editor);
      fetch(editor.getAttribute("data-preview"), { method: "POST", body: body, credentials: "same-origin",
                                                    headers: { "X-Requested-With": "fetch" } })
        .then(function (response) { return response.json(); })
        .then(function (report) {
          var list = document.getElementById("preview-errors");
          list.textContent = "";
          report.errors.forEach(function (e) {
            var item = document.createElement("li");
            item.textContent = e.part + (e.line ? ", line " + e.line : "") + ": " + e.message;
            list.appendChild(item);
          });
          show("preview-missing", report.missing_variables.length
            ? "The test model lacks: " + report.missing_variables.join(", ") : "");
          show("preview-subject", report.rendered ? report.rendered.subject : "");
          show("preview-text", report.rendered ? (report.rendered.text || "") : "");
          show("preview-status", report.valid ? "Rendered" : "Not rendered: " + report.errors.length + " error(s)");
          if (previewButton && report.rendered) { editor.requestSubmit(previewButton); }
        })
        .catch(function () { show("preview-status", "The preview could not be loaded."); });
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(refresh, 300); };
    editor.addEventListener("input", later);
    editor.addEventListener("change", later);
    refresh();
  }
})();
