// Postwerk dashboard: the little script there is. Everything works without it except copying to the clipboard.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var phone = window.matchMedia("(max-width: 40rem)");

  // On a phone the main navigation folds behind its Menu button, so the page itself is on the first screen.
  var nav = document.querySelector(".main-nav");
  var toggle = nav && nav.querySelector(".nav-toggle");
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
  // A table wider than the screen scrolls inside its .table-wrap: a keyboard must be able to reach and scroll it
  // (WCAG 2.1.1), so a scrolling wrapper becomes a focusable, named region; one that fits the screen does not.
  var scrollers = function () {
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
      if (scrolls && !wrap.hasAttribute("tabindex")) {
        var caption = wrap.querySelector("caption");
        var heading = wrap.closest("section, article");
        heading = heading && heading.querySelector("h1, h2, h3");
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-label", (caption || heading || { textContent: "Table" }).textContent.trim() + " (scrolls sideways)");
      } else if (!scrolls && wrap.getAttribute("role") === "region") {
        ["tabindex", "role", "aria-label"].forEach(function (name) { wrap.removeAttribute(name); });
      }
    });
  };
  scrollers();
  window.addEventListener("resize", scrollers);
  document.addEventListener("toggle", scrollers, true);  // a table inside <details> is measured once it opens

  // Filter panels (<details class="filters" open>) start folded on a phone unless a filter is in use.
  if (phone.matches) {
    document.querySelectorAll("details.filters[data-fold-on-phone]").forEach(function (panel) {
      if (panel.getAttribute("data-active") !== "true") { panel.open = false; }
    });
  }
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

  // The activity feed: every few seconds, ask for the rows since the newest shown (the server looks back a little
  // for late commits) and put the ones not yet shown on top. Polling, not server-sent events: see
  // dashboard/views/activity.py. Paused while the tab is hidden.
  var feed = document.getElementById("activity");
  if (feed) {
    var body = document.getElementById("activity-rows");
    var status = document.getElementById("activity-status");
    var url = feed.getAttribute("data-feed");
    var every = (parseInt(feed.getAttribute("data-poll-seconds"), 10) || 5) * 1000;
    var newest = function () {
      var first = body.querySelector("tr[data-time]");
      return first ? first.getAttribute("data-time") : "";
    };
    var poll = function () {
      if (document.hidden) { return; }
      var since = newest();
      var ask = url + (url.indexOf("?") < 0 ? "?" : "&") + (since ? "since=" + encodeURIComponent(since) : "");
      fetch(ask, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.text(); })
        .then(function (html) {
          var holder = document.createElement("template");
          holder.innerHTML = html;
          var fresh = Array.prototype.filter.call(holder.content.querySelectorAll("tr[data-event-id]"), function (row) {
            return !body.querySelector('tr[data-event-id="' + row.getAttribute("data-event-id") + '"]');
          });
          // The answer is newest first: insert from the oldest so the newest ends on top.
          for (var i = fresh.length - 1; i >= 0; i--) {
            fresh[i].classList.add("fresh");
            body.insertBefore(fresh[i], body.firstChild);
          }
          while (body.rows.length > 500) { body.deleteRow(body.rows.length - 1); }
          var empty = document.getElementById("activity-empty");
          if (empty && body.rows.length) { empty.hidden = true; }
          status.textContent = "Live: checked " + new Date().toLocaleTimeString() + ".";
          if (fresh.length) { live(fresh.length + " new event" + (fresh.length > 1 ? "s" : "")); }
        })
        .catch(function () { status.textContent = "Live updates paused: the server did not answer. Retrying."; });
    };
    status.textContent = "Live: new events appear as they happen.";
    setInterval(poll, every);
  }
})();
