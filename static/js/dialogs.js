// Decisions that change what serves (approve, reject, roll back) ask for a reason in a native <dialog>.
// Without this script each button is a link to the decision's own form page, which asks the same.
(function () {
  "use strict";

  function start() {
    document.querySelectorAll("a[data-dialog]").forEach(function (link) {
      var dialog = document.getElementById(link.dataset.dialog);
      if (!dialog || typeof dialog.showModal !== "function") return;
      link.addEventListener("click", function (event) {
        event.preventDefault();
        dialog.showModal();
        var reason = dialog.querySelector("textarea");
        if (reason) reason.focus();
      });
      dialog.querySelectorAll("[data-dialog-close]").forEach(function (button) {
        button.addEventListener("click", function () { dialog.close(); });
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
