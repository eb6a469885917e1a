// The instances that served this tab's last page views, newest first. Kept in the tab's
// sessionStorage and fed by the port each page carries: the server stores nothing of it, so a
// page view costs no session write, and through the load balancer the spread is there to see.
(function () {
  "use strict";
  var KEY = "served-by";
  var KEEP = 8;
  var port = document.body.getAttribute("data-instance");
  var list = document.getElementById("served-by");
  if (!port || !list) {
    return;
  }
  var views = [];
  try {
    views = JSON.parse(window.sessionStorage.getItem(KEY) || "[]");
  } catch (err) {
    views = [];
  }
  if (!Array.isArray(views)) {
    views = [];
  }
  views.unshift({ port: port, path: window.location.pathname, at: Date.now() });
  views = views.slice(0, KEEP);
  try {
    window.sessionStorage.setItem(KEY, JSON.stringify(views));
  } catch (err) {
    // Storage full or refused: the list still shows this view.
  }
  var instances = {};
  views.forEach(function (view, index) {
    instances[view.port] = true;
    var item = document.createElement("li");
    item.textContent = ":" + view.port;
    item.title = view.path + " at " + new Date(view.at).toLocaleTimeString();
    if (index === 0) {
      item.className = "latest";
      item.id = "served-by-latest";
    }
    list.appendChild(item);
  });
  var count = Object.keys(instances).length;
  document.getElementById("history-summary").textContent =
    "Your last " + views.length + (views.length === 1 ? " page view" : " page views") +
    " came from " + count + (count === 1 ? " instance" : " instances") + ", newest first:";
  document.getElementById("history").hidden = false;
})();
