// huoltosync board: live updates of the board from /events (server-sent events), and the
// preview of a hold reason. No framework; the pages work without it.
(function () {
  "use strict";

  // The hold form: show what the resident will read.
  function preview() {
    var reason = document.getElementById("hold-reason");
    var out = document.getElementById("hold-preview");
    if (!reason || !out) return;
    var update = function () { out.textContent = reason.value; };
    reason.addEventListener("input", update);
    update();
  }

  function rowId(account, id) { return "t-" + account + "-" + id; }

  // The heading counts every matching ticket (not only this page's): a ticket that arrives or
  // leaves moves it by one.
  function updateCount(delta) {
    var body = document.getElementById("ticket-rows");
    var n = body.querySelectorAll("tr:not(.leaving)").length;
    var count = document.getElementById("count");
    if (count && delta) count.textContent = String(Math.max(0, (parseInt(count.textContent, 10) || 0) + delta));
    var none = document.getElementById("no-tickets");
    if (none) none.hidden = n > 0;
  }

  function firstPage() {
    var table = document.getElementById("tickets");
    return !table || (table.getAttribute("data-page") || "1") === "1";
  }

  // Fetches a ticket's row (with the board's filters) and inserts or replaces it; a 204 means
  // the ticket is not on this board (any more).
  function refresh(account, id, isNew) {
    var url = "/fragments/row/" + encodeURIComponent(account) + "/" + id + window.location.search;
    fetch(url, { credentials: "same-origin" }).then(function (r) {
      var old = document.getElementById(rowId(account, id));
      if (r.status === 204) { if (old) leave(old); return null; }
      // A new ticket shows on the first page; on a later one it only counts.
      if (!old && !firstPage()) { updateCount(1); return null; }
      if (!r.ok) return null;
      return r.text().then(function (html) {
        var tmp = document.createElement("tbody");
        tmp.innerHTML = html.trim();
        var row = tmp.firstElementChild;
        if (!row) return;
        var current = document.getElementById(rowId(account, id));
        if (current) {
          current.replaceWith(row);
          updateCount(0);
        } else {
          row.classList.add("new");
          document.getElementById("ticket-rows").prepend(row);
          updateCount(1);
        }
      });
    }).catch(function () {});
  }

  function leave(row) {
    row.classList.add("leaving");
    setTimeout(function () { row.remove(); updateCount(-1); }, 1000);
  }

  function live() {
    var table = document.getElementById("tickets");
    if (!table || !window.EventSource) return;
    var seq = table.getAttribute("data-seq") || "0";
    var source = new EventSource("/events?after=" + encodeURIComponent(seq));
    source.onmessage = function (m) {
      var e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      if (e.ticket_id === null || e.ticket_id === undefined) return;
      var row = document.getElementById(rowId(e.account, e.ticket_id));
      if (e.type === "ticket.left") {
        if (row) leave(row);
      } else if (e.type === "ticket.new" || e.type === "ticket.returned") {
        refresh(e.account, e.ticket_id, true);
      } else if (row) {
        refresh(e.account, e.ticket_id, false);
      }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    preview();
    live();
  });
})();
