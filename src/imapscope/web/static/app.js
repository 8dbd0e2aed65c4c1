// The UI's own behaviour, in a file (the Content-Security-Policy allows no inline script).
// The sync modal closes on its Close button, a click on the backdrop, or Escape.
(function () {
  "use strict";
  function closeModal() {
    var modal = document.getElementById("modal");
    if (modal) { modal.innerHTML = ""; }
  }
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) { return; }
    if (target.closest("[data-close-modal]") || target.classList.contains("backdrop")) {
      closeModal();
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { closeModal(); }
  });
})();
