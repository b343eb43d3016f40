// The console's one script:
// - a page section with `data-refresh` is fetched again every two seconds while the page is
//   visible, one request at a time, and put in place;
// - a replay form with `data-progress` replays the entries listed one by one, each row
//   showing its outcome as it comes and a line counting them (without the script, the form
//   replays them all in one request).
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

  async function replayEach(form) {
    const rows = [...document.querySelectorAll("#outcomes tr[data-entry]")];
    const fields = new FormData(form);
    const progress = document.getElementById("progress");
    const summary = document.getElementById("counts");
    const counts = {};
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    let done = 0;
    for (const row of rows) {
      progress.textContent = `Replaying ${done + 1} of ${rows.length}…`;
      const body = new URLSearchParams({
        csrf: fields.get("csrf") || "",
        version: fields.get("version") || "",
      });
      let outcome = "failed";
      try {
        const path = `/console/dead-letters/${encodeURIComponent(row.dataset.entry)}/replay`;
        const answer = await fetch(path, { method: "POST", body, credentials: "same-origin" });
        if (answer.ok) {
          const item = await answer.json();
          outcome = item.outcome;
          row.querySelector("pre").textContent = JSON.stringify(item.detail, null, 2);
        }
      } catch (_) {
        // Counted as failed; the entry stays in the dead letter channel.
      }
      row.querySelector("td.kind").textContent = outcome;
      counts[outcome] = (counts[outcome] || 0) + 1;
      done += 1;
    }
    progress.textContent = `Replayed ${done} of ${rows.length}.`;
    const tally = Object.entries(counts).map(([kind, n]) => `${n} ${kind}`).join(", ");
    summary.textContent = `Through ${summary.dataset.target}: ${tally} of ${rows.length} matched.`;
    document.querySelector("main h1").textContent = "Replayed";
    const stored = document.getElementById("stored");
    if (stored) stored.remove();
  }
  const replay = document.querySelector("form[data-progress]");
  if (replay) {
    replay.addEventListener("submit", (event) => {
      event.preventDefault();
      replayEach(replay);
    });
  }
})();
