/*
 * twistbridge playground: exercises the four protocols of the running app
 * from the browser. No dependencies; everything server-supplied is shown
 * with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  function show(value) {
    if (value === undefined) { return "undefined"; }
    return JSON.stringify(value, null, 2);
  }

  function oneLine(value) {
    var text = JSON.stringify(value);
    return text === undefined ? "undefined" : text;
  }

  function setPill(el, state, text) {
    el.setAttribute("data-state", state);
    el.textContent = text;
  }

  function setStatus(el, text, kind) {
    el.textContent = text;
    el.className = "status" + (kind ? " " + kind : "");
  }

  /* Fetch JSON; resolves {status, body, text} whatever the status code. */
  function requestJSON(method, url, body, headers) {
    var init = { method: method, headers: headers || {}, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.text().then(function (text) {
        var parsed;
        try { parsed = text ? JSON.parse(text) : undefined; } catch (e) { parsed = undefined; }
        return { status: response.status, body: parsed, text: text };
      });
    });
  }

  /* ---------------------------------------------------------------- health */

  var health = {
    timer: null,
    refresh: function () {
      clearTimeout(health.timer);
      requestJSON("GET", "/health").then(function (r) {
        if (!r.body || typeof r.body !== "object") { throw new Error("HTTP " + r.status); }
        health.render(r.body);
      }).catch(function () {
        setPill($("health-status"), "down", "health: unreachable");
        $("health-services").textContent = "";
        $("health-pools").textContent = "";
      }).then(function () {
        health.timer = setTimeout(health.refresh, 5000);
      });
    },
    render: function (body) {
      var status = String(body.status || "unknown");
      setPill($("health-status"), status === "ok" ? "ok" : "starting", "health: " + status);
      var services = $("health-services");
      services.textContent = "";
      Object.keys(body.services || {}).sort().forEach(function (name) {
        var s = body.services[name] || {};
        var pill = document.createElement("span");
        pill.className = "pill";
        pill.setAttribute("data-state", s.up ? "ok" : "down");
        pill.textContent = name + (s.address ? " " + s.address : "") + (s.up ? "" : " down");
        services.appendChild(pill);
      });
      var pools = $("health-pools");
      pools.textContent = "";
      Object.keys(body.pools || {}).sort().forEach(function (name) {
        var p = body.pools[name];
        var pill = document.createElement("span");
        pill.className = "pill";
        if (p && typeof p === "object") {
          pill.textContent = name + " " + Object.keys(p).sort().map(function (k) {
            return k + "=" + oneLine(p[k]);
          }).join(" ");
        } else {
          pill.textContent = name + " " + oneLine(p);
        }
        pools.appendChild(pill);
      });
    }
  };

  /* ---------------------------------------------------------------- izzati */

  function addField(name, value) {
    var row = document.createElement("div");
    row.className = "field-row";
    var n = document.createElement("input");
    n.className = "field-name";
    n.setAttribute("aria-label", "field name");
    n.value = name || "";
    var v = document.createElement("input");
    v.className = "field-value";
    v.setAttribute("aria-label", "field value");
    v.value = value || "";
    row.appendChild(n);
    row.appendChild(v);
    $("upload-fields").appendChild(row);
    n.focus();
  }

  function sendUpload(event) {
    event.preventDefault();
    var form = new FormData();
    var rows = $("upload-fields").querySelectorAll(".field-row");
    Array.prototype.forEach.call(rows, function (row) {
      var name = row.querySelector(".field-name").value;
      if (name) { form.append(name, row.querySelector(".field-value").value); }
    });
    Array.prototype.forEach.call($("upload-file").files, function (f) {
      form.append("file", f, f.name);
    });
    var status = $("upload-status");
    var progress = $("upload-progress");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) { progress.max = e.total; progress.value = e.loaded; }
    };
    xhr.onload = function () {
      progress.hidden = true;
      $("upload-send").disabled = false;
      renderUpload(xhr);
    };
    xhr.onerror = function () {
      progress.hidden = true;
      $("upload-send").disabled = false;
      setStatus(status, "network error", "error");
    };
    progress.value = 0;
    progress.hidden = false;
    $("upload-send").disabled = true;
    setStatus(status, "sending…");
    $("upload-files").textContent = "";
    $("upload-result").textContent = "";
    xhr.send(form);
  }

  function renderUpload(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    var text = xhr.responseText;
    var ok = xhr.status >= 200 && xhr.status < 300;
    setStatus($("upload-status"), "HTTP " + xhr.status + " " + type, ok ? "" : "error");
    if (type.indexOf("application/json") === 0) {
      var body;
      try { body = JSON.parse(text); } catch (e) { body = undefined; }
      if (body !== undefined) {
        $("upload-result").textContent = show(body);
        var list = $("upload-files");
        if (body && Array.isArray(body.files)) {
          body.files.forEach(function (f) {
            var li = document.createElement("li");
            if (f && typeof f === "object") {
              li.textContent = String(f.filename) + " — " + String(f.size) + " bytes";
            } else {
              li.textContent = String(f);
            }
            list.appendChild(li);
          });
        }
        return;
      }
    }
    $("upload-result").textContent = text.length > 4000 ? text.slice(0, 4000) + "…" : text;
  }

  /* ----------------------------------------------------------------- Igor */

  var igor = {
    socket: null,
    attempt: 0,
    timer: null,
    nextStream: 1,
    ticks: 0,
    delays: [250, 500, 1000, 2000, 4000, 5000],

    url: function () {
      return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    },

    connect: function () {
      clearTimeout(igor.timer);
      setPill($("ws-state"), "connecting", "connecting");
      $("ws-detail").textContent = igor.attempt ? "attempt " + (igor.attempt + 1) : "";
      var socket;
      try {
        socket = new WebSocket(igor.url());
      } catch (e) {
        igor.retry();
        return;
      }
      igor.socket = socket;
      socket.onopen = function () {
        igor.attempt = 0;
        setPill($("ws-state"), "open", "open");
        $("ws-detail").textContent = igor.url();
        $("echo-send").disabled = false;
        health.refresh();
        // After a server restart, pick up what the new process serves.
        if (!$("rpc-method").options.length) { rpc.list(); }
        bgpy.refresh();
      };
      socket.onmessage = function (event) { igor.receive(event.data); };
      socket.onclose = function (event) {
        if (igor.socket !== socket) { return; }
        igor.socket = null;
        $("echo-send").disabled = true;
        igor.retry(event.code);
        health.refresh();
      };
    },

    retry: function (code) {
      var delay = igor.delays[Math.min(igor.attempt, igor.delays.length - 1)];
      igor.attempt += 1;
      setPill($("ws-state"), "closed", "closed");
      $("ws-detail").textContent = (code ? "code " + code + ", " : "") +
        "reconnecting in " + (delay / 1000) + " s";
      igor.timer = setTimeout(igor.connect, delay);
    },

    log: function (direction, text) {
      var log = $("ws-log");
      var li = document.createElement("li");
      li.className = direction;
      li.textContent = text;
      li.title = text;
      log.insertBefore(li, log.firstChild);
      while (log.childNodes.length > 30) { log.removeChild(log.lastChild); }
    },

    receive: function (raw) {
      igor.log("in", raw);
      var msg;
      try { msg = JSON.parse(raw); } catch (e) { return; }
      if (!msg || typeof msg !== "object") { return; }
      var id = msg.streamId;
      if (id === "clock" && msg.action === "tick") {
        igor.ticks += 1;
        $("clock-value").textContent = oneLine(msg.data);
        $("clock-count").textContent = String(igor.ticks);
        return;
      }
      if (typeof id === "string" && id.indexOf("page-") === 0) {
        if ("data" in msg) { $("echo-result").textContent = oneLine(msg.data); }
        if ("error" in msg) {
          $("echo-result").textContent = "";
          setStatus($("echo-state"), "error: " + String(msg.error), "error");
        } else if (msg.close) {
          setStatus($("echo-state"), "stream " + id + " closed");
        } else {
          setStatus($("echo-state"), "stream " + id + " open");
        }
      } else if (id === undefined && "error" in msg) {
        setStatus($("echo-state"), "error " + String(msg.code) + ": " + String(msg.error), "error");
      }
    },

    send: function (event) {
      event.preventDefault();
      if (!igor.socket || igor.socket.readyState !== WebSocket.OPEN) { return; }
      var id = "page-" + igor.nextStream++;
      var message = JSON.stringify({
        streamId: id,
        action: $("echo-action").value,
        data: $("echo-input").value
      });
      $("echo-result").textContent = "";
      setStatus($("echo-state"), "stream " + id + " sent");
      igor.socket.send(message);
      igor.log("out-msg", message);
    }
  };

  /* ------------------------------------------------------------- JSON-RPC */

  var EXAMPLES = { add: "[2, 3]", echo: "[\"hello\"]" };

  var rpc = {
    id: 0,

    call: function (method, params) {
      var body = { jsonrpc: "2.0", id: ++rpc.id, method: method };
      if (params !== undefined) { body.params = params; }
      return requestJSON("POST", $("rpc-path").value || "/rpc", body);
    },

    // The methods and their parameters come from the path's OpenRPC
    // description (rpc.discover); a server without it is asked
    // system.listMethods, and then the form cannot suggest parameters.
    described: {},

    list: function () {
      var select = $("rpc-method");
      rpc.call("rpc.discover").then(function (r) {
        var doc = r.body && r.body.result;
        if (doc && Array.isArray(doc.methods)) {
          rpc.described = {};
          doc.methods.forEach(function (m) { rpc.described[m.name] = m; });
          return doc.methods.map(function (m) { return m.name; });
        }
        return rpc.call("system.listMethods").then(function (r2) {
          var listed = r2.body && Array.isArray(r2.body.result) ? r2.body.result : null;
          if (!listed) { throw new Error(r2.body && r2.body.error ? r2.body.error.message : "HTTP " + r2.status); }
          rpc.described = {};
          return listed;
        });
      }).then(function (methods) {
        var previous = select.value;
        select.textContent = "";
        methods.slice().sort().forEach(function (name) {
          var option = document.createElement("option");
          option.value = option.textContent = String(name);
          select.appendChild(option);
        });
        if (methods.indexOf(previous) >= 0) {
          select.value = previous;
        } else {
          select.value = methods.indexOf("add") >= 0 ? "add" : (methods[0] || "");
        }
        rpc.example();
      }).catch(function (e) {
        select.textContent = "";
        $("rpc-answer").textContent = "";
        $("rpc-doc").textContent = "";
        $("rpc-result").textContent = "could not list methods: " + e.message;
      });
    },

    sample: function (schema) {
      if (schema && "default" in schema) { return schema["default"]; }
      var samples = { integer: 1, number: 1.5, string: "text", boolean: true,
                      array: [], object: {} };
      var type = schema && schema.type;
      return type in samples ? samples[type] : null;
    },

    example: function () {
      var name = $("rpc-method").value;
      var method = rpc.described[name];
      var doc = $("rpc-doc");
      if (!method) {
        doc.textContent = "";
        $("rpc-params").value = EXAMPLES[name] || "[]";
        return;
      }
      var names = method.params.map(function (p) {
        return p.name + (p.required ? "" : "?");
      });
      doc.textContent = name + "(" + names.join(", ") + ")" +
        (method.summary ? ": " + method.summary : "");
      $("rpc-params").value = EXAMPLES[name] ||
        JSON.stringify(method.params.map(function (p) { return rpc.sample(p.schema); }));
    },

    submit: function (event) {
      event.preventDefault();
      var params;
      var text = $("rpc-params").value.trim();
      try {
        params = text ? JSON.parse(text) : undefined;
      } catch (e) {
        $("rpc-answer").textContent = "params are not JSON: " + e.message;
        return;
      }
      $("rpc-answer").textContent = "…";
      rpc.call($("rpc-method").value, params).then(function (r) {
        $("rpc-result").textContent = r.body !== undefined ? show(r.body) : "HTTP " + r.status + " " + r.text;
        if (r.body && "result" in r.body) {
          $("rpc-answer").textContent = oneLine(r.body.result);
        } else if (r.body && r.body.error) {
          $("rpc-answer").textContent = "error " + r.body.error.code + ": " + r.body.error.message;
        } else {
          $("rpc-answer").textContent = "HTTP " + r.status;
        }
      }).catch(function (e) {
        $("rpc-answer").textContent = "network error: " + e.message;
      });
    }
  };

  /* ----------------------------------------------------------------- bgpy */

  var bgpy = {
    token: "",

    headers: function () {
      return bgpy.token ? { "Authorization": "Bearer " + bgpy.token } : {};
    },

    handle: function (r) {
      var unavailable = $("bgpy-unavailable");
      var buttons = ["bgpy-increase", "bgpy-decrease", "bgpy-exec"];
      var usable = r.status !== 503 && r.status !== 401;
      buttons.forEach(function (id) { $(id).disabled = !usable; });
      $("bgpy-token-row").hidden = r.status !== 401;
      if (r.status === 503 || r.status === 401) {
        unavailable.hidden = false;
        unavailable.textContent = (r.body && r.body.error) || "HTTP " + r.status;
        return;
      }
      unavailable.hidden = true;
      if (r.body && "state" in r.body) { bgpy.render(r.body.state); }
    },

    render: function (state) {
      if (!state || typeof state !== "object") {
        $("bgpy-value").textContent = "not initialized";
        $("bgpy-count").textContent = "–";
        return;
      }
      $("bgpy-value").textContent = "value" in state ? oneLine(state.value) : "–";
      $("bgpy-count").textContent = "request_count" in state ? oneLine(state.request_count) : "–";
    },

    refresh: function () {
      return requestJSON("GET", "/bgpy/state", undefined, bgpy.headers())
        .then(bgpy.handle)
        .catch(function () { /* the health strip says the server is gone */ });
    },

    exec: function (args) {
      $("bgpy-result").textContent = "…";
      requestJSON("POST", "/bgpy/exec", args, bgpy.headers()).then(function (r) {
        $("bgpy-result").textContent = "HTTP " + r.status + "\n" + (r.body !== undefined ? show(r.body) : r.text);
        bgpy.handle(r);
      }).catch(function (e) {
        $("bgpy-result").textContent = "network error: " + e.message;
      });
    },

    command: function (command) {
      var change = Number($("bgpy-change").value);
      bgpy.exec({ command: command, value_change: isFinite(change) ? change : 0 });
    },

    free: function () {
      var args;
      try { args = JSON.parse($("bgpy-args").value); } catch (e) {
        $("bgpy-result").textContent = "exec_args are not JSON: " + e.message;
        return;
      }
      bgpy.exec(args);
    }
  };

  /* ----------------------------------------------------------------- wiring */

  function start() {
    $("upload-form").addEventListener("submit", sendUpload);
    $("upload-add-field").addEventListener("click", function () { addField("", ""); });
    // Field names are editable with JavaScript: "+ field" adds rows.
    $("upload-add-field").hidden = false;
    $("echo-form").addEventListener("submit", igor.send);
    $("echo-send").disabled = true;
    $("rpc-form").addEventListener("submit", rpc.submit);
    $("rpc-method").addEventListener("change", rpc.example);
    $("rpc-refresh").addEventListener("click", rpc.list);
    $("rpc-path").addEventListener("change", rpc.list);
    $("bgpy-increase").addEventListener("click", function () { bgpy.command("increase"); });
    $("bgpy-decrease").addEventListener("click", function () { bgpy.command("decrease"); });
    $("bgpy-exec").addEventListener("click", bgpy.free);
    $("bgpy-token-use").addEventListener("click", function () {
      bgpy.token = $("bgpy-token").value;
      bgpy.refresh();
    });
    health.refresh();
    igor.connect();
    rpc.list();
    bgpy.refresh();
    setInterval(bgpy.refresh, 5000);
    document.body.setAttribute("data-ready", "true");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
