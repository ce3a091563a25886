// Times are rendered in the browser's zone: dashboard/middleware.py reads this cookie.
// Loaded in <head>, before the page draws, as the inline script it replaces was (the CSP allows no inline script).
(function () {
  "use strict";
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && document.cookie.indexOf("tz=" + zone) === -1) {
    document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  }
})();
