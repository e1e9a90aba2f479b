// conveyor ui: the few behaviours htmx does not give (no inline script: the CSP forbids it).
(function () {
  "use strict";
  // A polled table keeps the user's selection: skip the refresh while a box is checked.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.hasAttribute("data-keep-selection") && elt.querySelector("input[name=ids]:checked")) {
      event.preventDefault();
    }
  });
  // "Select all" box.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.matches && box.matches("input[data-select-all]")) {
      document.querySelectorAll("input[name=ids]").forEach(function (each) {
        each.checked = box.checked;
      });
    }
  });
  // Ask before destructive actions.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
})();
