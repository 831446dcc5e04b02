// Live notifications for the pages: the one script of the site (docs/desk.md, "Live notifications").
// It opens the session's server-sent event stream, from the notification the page was rendered after, and
// lists each new notification in the page's live panel; nothing polls. A hidden tab lets its stream go (a
// browser allows a few connections per site: background tabs must not hold them) and reopens it, from the
// last notification it saw, when shown again. Text only (textContent): a notification never becomes markup.
(function () {
  "use strict";
  var region = document.getElementById("live");
  if (!region || !window.EventSource) { return; }
  var list = region.querySelector("ol");
  var feed = document.getElementById("feed");  // the notifications page's own list, newest first
  var onNewest = feed && !/[?&]before=/.test(window.location.search);
  var shown = 6;
  var stream = region.getAttribute("data-stream");  // ".../stream?after=CURSOR"
  var after = stream.replace(/^.*[?&]after=(\d+).*$/, "$1");
  var base = stream.replace(/\?.*$/, "");
  var source = null;

  function line(note) {
    var item = document.createElement("li");
    var link = document.createElement("a");
    link.href = "/declarations/" + encodeURIComponent(note.declaration_id);
    link.textContent = note.reference;
    item.appendChild(link);
    var what = note.type === "declaration.decision"
      ? " · " + note.agency + ": " + note.status.replace(/_/g, " ") + (note.code ? " (" + note.code + ")" : "")
      : " is now " + note.status.replace(/_/g, " ");
    item.appendChild(document.createTextNode(what));
    var when = document.createElement("time");
    when.dateTime = note.time;
    when.textContent = " · " + note.time.slice(11, 19) + " UTC";
    item.appendChild(when);
    item.className = "n-" + note.status;
    return item;
  }

  function received(message) {
    var note;
    try { note = JSON.parse(message.data); } catch (error) { return; }
    if (!note || !note.declaration_id || !note.reference || !note.status) { return; }
    if (/^\d+$/.test(message.lastEventId)) { after = message.lastEventId; }
    region.hidden = false;
    list.insertBefore(line(note), list.firstChild);
    while (list.children.length > shown) { list.removeChild(list.lastChild); }
    if (onNewest) {
      feed.insertBefore(line(note), feed.firstChild);
      var empty = document.getElementById("feed-empty");
      if (empty) { empty.hidden = true; }
    }
  }

  function open() {
    if (source) { return; }
    source = new EventSource(base + "?after=" + encodeURIComponent(after));
    source.onmessage = received;
  }

  function close() {
    if (source) { source.close(); source = null; }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { close(); } else { open(); }
  });
  if (document.visibilityState !== "hidden") { open(); }
})();
