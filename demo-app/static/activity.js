// The home page's live activity: lines like "alice logged in on :8082", newest first, from
// GET /api/events.
(function () {
  "use strict";
  var log = document.getElementById("activity-log");
  if (!log || !window.EventSource) {
    return;
  }
  var said = {
    created: "logged in", renewed: "logged in again", deleted: "logged out",
    revoked: "was logged out remotely", expired: "was logged out (expired)",
    evicted: "was logged out (too many sessions)"
  };
  function add(text, kind) {
    var item = document.createElement("li");
    item.className = kind;
    var time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    item.appendChild(time);
    item.appendChild(document.createTextNode(" " + text));
    log.insertBefore(item, log.firstChild);
    while (log.children.length > 20) {
      log.removeChild(log.lastChild);
    }
  }
  var source = new EventSource("/api/events");
  source.onmessage = function (message) {
    var event;
    try {
      event = JSON.parse(message.data);
    } catch (err) {
      return;
    }
    if (event.event === "reconnected") {
      add("(back in touch with Redis: events in between were missed)", "note");
    } else if (event.event === "lagged") {
      add("(some events were skipped)", "note");
    } else if (said[event.event]) {
      add((event.user || "someone") + " " + said[event.event] +
          (event.instance ? " on :" + event.instance : ""), event.event);
    }
  };
})();
