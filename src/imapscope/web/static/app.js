// The UI's own behaviour, in a file (the Content-Security-Policy allows no inline script).
// - The sync modal is a native <dialog>: showModal() keeps focus inside it and makes the page
//   behind it inert; Escape, the Close button and a click on the backdrop close it; focus goes
//   back to the button that opened it.
// - Times: the server writes UTC; here they are shown in the browser's zone, with UTC on hover,
//   and relative ("in 12 s", "3 min ago") where data-relative is set, ticking every second.
// - Polled fragments are morphed (idiomorph): a <time> whose moment did not change and an
//   opened <details> are left as they are. A change of an account's state is announced in the
//   polite live region.
// - Forms with data-confirm ask first.
(function () {
  "use strict";
  var opener = null;

  function dialog() { return document.getElementById("modal"); }

  function closeModal() {
    var d = dialog();
    if (d && d.open) { d.close(); }
  }

  // -- times --------------------------------------------------------------------------------
  var absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  var relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function relative(when) {
    var seconds = Math.round((when.getTime() - Date.now()) / 1000);
    var size = Math.abs(seconds);
    if (size < 60) { return relativeFormat.format(seconds, "second"); }
    if (size < 3600) { return relativeFormat.format(Math.round(seconds / 60), "minute"); }
    if (size < 86400) { return relativeFormat.format(Math.round(seconds / 3600), "hour"); }
    return relativeFormat.format(Math.round(seconds / 86400), "day");
  }

  function showTimes(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var when = new Date(t.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      var local = absolute.format(when);
      var text = t.hasAttribute("data-relative") ? relative(when) : local;
      if (t.textContent !== text) { t.textContent = text; }
      var title = t.hasAttribute("data-relative") ? local + " (" + when.toISOString().replace("T", " ").slice(0, 19) + " UTC)"
                                                  : when.toISOString().replace("T", " ").slice(0, 19) + " UTC";
      if (t.title !== title) { t.title = title; }
    }
  }

  // -- a table that scrolls sideways in its box can be reached and scrolled by keyboard --------
  function scrollables() {
    var boxes = document.querySelectorAll(".table-wrap");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      if (box.scrollWidth > box.clientWidth + 1) {
        if (!box.hasAttribute("tabindex")) {
          var caption = box.querySelector("caption");
          box.setAttribute("tabindex", "0");
          box.setAttribute("role", "region");
          box.setAttribute("aria-label", (caption ? caption.textContent : "Table") + " (scrolls sideways)");
        }
      } else if (box.getAttribute("tabindex") === "0") {
        box.removeAttribute("tabindex"); box.removeAttribute("role"); box.removeAttribute("aria-label");
      }
    }
  }

  // -- announcements ------------------------------------------------------------------------
  function announce(text) {
    var region = document.getElementById("announce");
    if (region) { region.textContent = text; }
  }

  function states() {
    var found = {};
    var items = document.querySelectorAll("[data-state][data-name]");
    for (var i = 0; i < items.length; i++) {
      found[items[i].id] = [items[i].getAttribute("data-name"), items[i].getAttribute("data-state")];
    }
    return found;
  }

  var before = {};
  document.addEventListener("htmx:beforeSwap", function () { before = states(); });
  // A swapped-in table gets keyboard access at once, not only after the settle delay.
  document.addEventListener("htmx:afterSwap", function () { scrollables(); });
  document.addEventListener("htmx:afterSettle", function (event) {
    var after = states();
    var changes = [];
    for (var id in after) {
      if (before[id] && before[id][1] !== after[id][1]) {
        changes.push(after[id][0] + " is now " + after[id][1].replace("_", " "));
      }
    }
    if (changes.length) { announce(changes.join(". ") + "."); }
    var target = (event.detail && event.detail.target) || event.target;
    showTimes(target);
    scrollables();
    var d = dialog();
    if (d && target && target.id === "modal-content" && !d.open) {
      opener = document.activeElement;
      d.showModal();
      var close = document.getElementById("modal-close");
      if (close) { close.focus(); }
    }
  });

  // -- morphing: keep what the reader has opened, and times that did not change ----------------
  function configureMorph() {
    if (typeof Idiomorph === "undefined") { return; }
    var callbacks = Idiomorph.defaults.callbacks;
    callbacks.beforeAttributeUpdated = function (name, node) {
      return !(name === "open" && node.tagName === "DETAILS");
    };
    callbacks.beforeNodeMorphed = function (oldNode, newNode) {
      if (oldNode.nodeType === 1 && oldNode.tagName === "TIME" && newNode.nodeType === 1 &&
          oldNode.getAttribute("datetime") === newNode.getAttribute("datetime")) {
        return false;
      }
      return true;
    };
  }

  // -- events -------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", function () {
    configureMorph();
    showTimes(document);
    scrollables();
    window.addEventListener("resize", scrollables);
    // Times change width as they count up: a table they widen may become scrollable, and a
    // scrollable region needs keyboard access (axe: scrollable-region-focusable).
    setInterval(function () { showTimes(document); scrollables(); }, 1000);
    var d = dialog();
    if (d) {
      d.addEventListener("close", function () {
        var content = document.getElementById("modal-content");
        if (content) { content.innerHTML = ""; }
        if (opener && document.contains(opener)) { opener.focus(); }
        opener = null;
      });
      d.addEventListener("click", function (event) {
        if (event.target === d) { closeModal(); }  // the backdrop: outside the content box
      });
    }
  });
  // Tab and Shift+Tab cycle inside the open dialog (a native modal dialog would let focus
  // leave for the browser's own controls after its last element).
  document.addEventListener("keydown", function (event) {
    var d = dialog();
    if (event.key !== "Tab" || !d || !d.open) { return; }
    var items = Array.prototype.filter.call(
      d.querySelectorAll("a[href], button:not([disabled]), input:not([disabled]), select, textarea, summary, [tabindex]:not([tabindex='-1'])"),
      function (el) { return el.offsetParent !== null; });
    if (!items.length) { return; }
    var first = items[0], last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !d.contains(document.activeElement))) {
      event.preventDefault(); last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !d.contains(document.activeElement))) {
      event.preventDefault(); first.focus();
    }
  });
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof Element && target.closest("[data-close-modal]")) { closeModal(); }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-confirm") &&
        !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
})();
