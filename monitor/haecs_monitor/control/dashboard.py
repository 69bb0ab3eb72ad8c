"""The dashboard: one self-contained HTML page (no external assets).

It fetches /status every two seconds and draws the table; a server's
drain, disable and enable buttons POST what `haecsctl` would.  The page holds no
data itself; over the TCP listener it asks for the API token once and sends
it as a Bearer header (kept in the tab's sessionStorage only).
"""

from __future__ import annotations

import base64
import hashlib
import re

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>HAECS monitor</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
#meta { color: #555; margin-bottom: 1em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
tr.svc td { background: #eef3fa; font-weight: 600; }
.up { color: #137333; font-weight: 600; }
.down { color: #c5221f; font-weight: 600; }
.drain, .disable, .sorry, .below { color: #b06000; font-weight: 600; }
.detail { color: #666; font-size: .9em; }
button { font: inherit; font-size: .85em; margin: 0 .2em .2em 0; cursor: pointer; }
#error, #action { color: #c5221f; font-weight: 600; }
code { font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>HAECS monitor <span id="name"></span></h1>
<div id="meta">loading&hellip;</div>
<div id="error"></div>
<div id="action"></div>
<table>
<thead><tr><th>service / server</th><th>health</th><th>admin</th><th>weight</th><th>checks</th><th>actions</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<script>
"use strict";
function esc(s) {
  return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g,
    function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]; });
}
var STATE_OF = {"drain": "drain", "disable": "disable", "enable": "enabled"};  // action -> admin state
function headers() {
  var token = sessionStorage.getItem("haecs-token");
  return token ? {"Authorization": "Bearer " + token} : {};
}
function draw(s) {
  document.getElementById("name").textContent = s.name ? "(" + s.name + ")" : "";
  document.getElementById("meta").textContent =
    s.services.length + " services, up " + Math.round(s.uptime_seconds) + " s, loop lag " +
    (s.loop.lag_seconds * 1000).toFixed(1) + " ms (max " + (s.loop.max_lag_seconds * 1000).toFixed(1) +
    " ms), kernel operations " + s.kernel.operations_total + ", drift repaired " + s.kernel.drift_total;
  var html = "";
  s.services.forEach(function (svc) {
    var flags = svc.below_quorum ? ' <span class="below">below quorum</span>' : "";
    if (svc.sorry_active) flags += ' <span class="sorry">sorry server in</span>';
    html += '<tr class="svc"><td colspan="6"><code>' + esc(svc.id) + "</code> " + esc(svc.scheduler) +
      " (healthy weight " + svc.healthy_weight + "/" + svc.total_weight + ")" + flags + "</td></tr>";
    svc.servers.forEach(function (rs) {
      var checks = (rs.checks || []).map(function (c) {
        return esc(c.name) + ": <span class=\\"" + (c.up ? "up" : "down") + "\\">" + (c.up ? "up" : "down") +
          "</span> <span class=\\"detail\\">" + esc(c.detail) +
          (c.history ? " [" + esc(c.history) + "]" : "") + "</span>";
      }).join("<br>");
      html += "<tr><td><code>" + esc(rs.id) + "</code></td><td class=\\"" + esc(rs.health) + "\\">" +
        esc(rs.health) + '</td><td class="' + esc(rs.admin) + '">' + esc(rs.admin) + "</td><td>" +
        (rs.in_table ? rs.weight : "&ndash;") + " / " + rs.configured_weight + "</td><td>" + checks + "</td><td>" +
        ["drain", "disable", "enable"].filter(function (a) { return STATE_OF[a] !== rs.admin; }).map(function (a) {
          return '<button type="button" data-action="' + a + '" data-service="' + esc(svc.id) + '" data-server="' + esc(rs.id) + '">' + a + "</button>";
        }).join("") + "</td></tr>";
    });
    (svc.sorry_servers || []).forEach(function (rs) {
      html += "<tr><td><code>" + esc(rs.id) + '</code></td><td class="sorry">sorry server</td><td>' +
        (rs.in_table ? "in" : "standby") + "</td><td>" + (rs.in_table ? rs.weight : "&ndash;") + "</td><td></td><td></td></tr>";
    });
  });
  document.getElementById("rows").innerHTML = html;
}
function refresh() {
  fetch("status", {headers: headers(), cache: "no-store"}).then(function (r) {
    if (r.status === 401) {
      var token = window.prompt("API token");
      if (token) sessionStorage.setItem("haecs-token", token);
      throw new Error("unauthorized");
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }).then(function (s) {
    document.getElementById("error").textContent = "";
    draw(s);
  }).catch(function (e) {
    document.getElementById("error").textContent = "cannot read status: " + e.message;
  });
}
// Drain, disable, enable: the same POST as `haecsctl drain`, with the token.
document.getElementById("rows").addEventListener("click", function (event) {
  var button = event.target.closest("button[data-action]");
  if (!button) return;
  var what = button.dataset.action + " " + button.dataset.server;
  var path = "servers/" + encodeURIComponent(button.dataset.service) + "/" +
    encodeURIComponent(button.dataset.server) + "/" + button.dataset.action;
  fetch(path, {method: "POST", headers: headers(), cache: "no-store"}).then(function (r) {
    if (r.status === 401) throw new Error("refused: the API token is missing or wrong");
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }).then(function () {
    document.getElementById("action").textContent = "";
    refresh();
  }).catch(function (e) {
    document.getElementById("action").textContent = what + ": " + e.message;
  });
});
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""


def _inline_hashes(tag: str) -> str:
    """'sha256-...' sources for the page's inline <tag> blocks."""
    blocks = re.findall(r"<%s>(.*?)</%s>" % (tag, tag), PAGE, re.S)
    return " ".join(
        "'sha256-%s'" % base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        for block in blocks
    )


# Only the page's own inline script and style run; it talks to its own
# origin only; no frames, no forms elsewhere, no plugins.  The empty data:
# icon spares the browser a /favicon.ico request (a 401 without the token).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    % (_inline_hashes("script"), _inline_hashes("style"))
)
