// The console's one script: a page section with `data-refresh` is fetched again every two
// seconds while the page is visible, one request at a time, and put in place.
"use strict";
(function () {
  const PERIOD_MS = 2000;
  let busy = false;
  async function refresh() {
    const section = document.querySelector("[data-refresh]");
    if (!section || busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(section.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok) {
        const html = await answer.text();
        const fresh = document.createElement("template");
        fresh.innerHTML = html;
        const replacement = fresh.content.firstElementChild;
        if (replacement) section.replaceWith(replacement);
      } else if (answer.status === 401) {
        window.location.assign("/console/login");
      }
    } catch (_) {
      // The host is away: the next period tries again.
    } finally {
      busy = false;
    }
  }
  window.setInterval(refresh, PERIOD_MS);
})();
