// The broker's dashboard: snapshots over /broker/admin/ws, jobs through /broker/admin/jobs.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var socket = null, catalog = [], last = null, nextId = 1, retry = 500;
  var previousCalls = {};

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; }
      else if (key === "cls") { node.className = attrs[key]; }
      else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }
  function td(text, cls) { return el("td", {text: text === null || text === undefined ? "—" : String(text), cls: cls || ""}); }
  function pill(ok, text) { var c = el("td"); c.appendChild(el("span", {cls: "pill " + (ok === null ? "off" : ok ? "ok" : "bad"), text: text})); return c; }
  function fill(id, rows, empty) {
    var body = $(id);
    body.textContent = "";
    if (!rows.length) { body.appendChild(el("tr", {}, [el("td", {text: empty, colspan: "6", cls: "message"})])); return; }
    rows.forEach(function (row) { body.appendChild(row); });
  }
  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleTimeString();
  }
  function setStatus(text, cls) { var s = $("status"); s.textContent = text; s.className = "status " + cls; }

  // -- snapshots --------------------------------------------------------------------------------
  function renderServices(services) {
    services = services.slice().sort(function (a, b) {  // busiest first, then by name
      return (b.invocations - a.invocations) || (a.name < b.name ? -1 : 1);
    });
    fill("services-body", services.map(function (s) {
      var row = el("tr", {"data-service": s.name}, [
        td(s.name), td(s.invocations, "num calls"), td(s.errors, "num " + (s.errors ? "errors" : "")),
        td(s.timeouts, "num opt"), td(s.p50_ms, "num"), td(s.p99_ms, "num")]);
      if (previousCalls[s.name] !== undefined && previousCalls[s.name] !== s.invocations) { row.className = "flash"; }
      previousCalls[s.name] = s.invocations;
      return row;
    }), "no services");
  }
  function renderChannels(channels) {
    fill("channels-body", channels.map(function (c) {
      var row = el("tr", {"data-channel": c.name}, [td(c.name), td(c.type), pill(c.ok, c.state)]);
      if (c.detail) { row.title = c.detail; }
      return row;
    }), "no channels");
  }
  function renderAmqp(amqp) {
    fill("amqp-connections", amqp.connections.map(function (c) {
      return el("tr", {}, [td(c.name), pill(!!c.ok, c.state || (c.ok ? "connected" : "down"))]);
    }), "no AMQP connections");
    fill("amqp-queues", amqp.queues.map(function (q) {
      return el("tr", {}, [td(q.channel), td(q.queue), td(q.consumers, "num")]);
    }), "no AMQP channels");
  }
  function renderTopics(topics, previous, seconds) {
    if (!topics) { fill("topics-body", [], "pub/sub is off"); return; }
    $("topics-published").textContent = topics.published;
    $("topics-dropped").textContent = topics.dropped;
    if (previous && previous.topics && seconds > 0) {
      $("topics-rate").textContent = ((topics.published - previous.topics.published) / seconds).toFixed(1);
      $("topics-delivery-rate").textContent = ((topics.deliveries - previous.topics.deliveries) / seconds).toFixed(1);
    }
    fill("topics-body", topics.patterns.map(function (p) {
      return el("tr", {}, [td(p.pattern), td(p.subscribers, "num")]);
    }), "no subscribers");
  }
  function jobButton(job, action, label) {
    return el("button", {type: "button", "data-job": job.name, "data-action": action, text: label,
                         cls: action === "run" ? "" : "secondary"});
  }
  function renderJobs(jobs) {
    fill("jobs-body", jobs.map(function (j) {
      var actions = el("td", {cls: "num"}, [jobButton(j, "run", "Run now"),
        j.enabled ? jobButton(j, "disable", "Disable") : jobButton(j, "enable", "Enable")]);
      return el("tr", {"data-job": j.name}, [
        el("td", {}, [document.createTextNode(j.name + " "), el("span", {cls: "pill " + (j.enabled ? "ok" : "off"), text: j.enabled ? "on" : "off"})]),
        td(j.schedule, "opt"), td(when(j.last_run)), td(when(j.next_run)), td(j.runs, "num runs"), actions]);
    }), "no jobs");
  }
  function render(snapshot) {
    $("node").textContent = snapshot.node;
    renderServices(snapshot.services);
    renderChannels(snapshot.channels);
    renderAmqp(snapshot.amqp);
    renderTopics(snapshot.topics, last, last ? snapshot.time - last.time : 0);
    renderJobs(snapshot.jobs);
    last = snapshot;
  }

  // -- jobs: run, enable, disable through the admin API -----------------------------------------
  $("jobs-body").addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var name = button.getAttribute("data-job"), action = button.getAttribute("data-action");
    button.disabled = true;
    // location.origin: never the page URL itself, which may carry user:password@ (fetch refuses it)
    fetch(location.origin + "/broker/admin/jobs/" + encodeURIComponent(name) + "/" + action,
          {method: "POST", credentials: "same-origin"})
      .then(function (response) {
        return response.json().then(function (body) { return {ok: response.ok, body: body}; });
      })
      .then(function (answer) {
        $("jobs-message").textContent = answer.ok ? name + ": " + action + " done" :
          name + ": " + (answer.body.details || answer.body.code);
      })
      .catch(function (error) { $("jobs-message").textContent = name + ": " + error; })
      .then(function () { button.disabled = false; });
  });

  // -- live tail --------------------------------------------------------------------------------
  $("tail-form").addEventListener("submit", function (event) {
    event.preventDefault();
    send({op: "tail", pattern: $("tail-pattern").value.trim()});
  });
  $("tail-stop").addEventListener("click", function () { send({op: "tail", pattern: null}); });
  function tailed(frame) {
    var log = $("tail-log");
    var item = el("li", {}, [el("span", {cls: "topic", text: frame.topic}),
                             document.createTextNode(" " + JSON.stringify(frame.data))]);
    log.insertBefore(item, log.firstChild);
    while (log.children.length > 200) { log.removeChild(log.lastChild); }
  }

  // -- invoke form, generated from SimpleIO -----------------------------------------------------
  function inputFor(field) {
    var type = field.schema && field.schema.type;
    if (Array.isArray(type)) { type = type.filter(function (t) { return t !== "null"; })[0]; }
    var input;
    if (type === "boolean") {
      input = el("select", {}, [el("option", {value: "", text: ""}), el("option", {value: "true", text: "true"}),
                                el("option", {value: "false", text: "false"})]);
    } else if (type === "object" || type === "array") {
      input = el("textarea", {rows: "2", placeholder: "JSON"});
    } else {
      input = el("input", {type: type === "integer" || type === "number" ? "number" : "text"});
      if (type === "number") { input.setAttribute("step", "any"); }
    }
    input.name = field.name;
    input.setAttribute("data-type", type || "string");
    if (field.required) { input.required = true; }
    return el("label", {text: field.name + (field.required ? " *" : "")}, [input]);
  }
  function showFields() {
    var box = $("invoke-fields"), name = $("invoke-service").value;
    box.textContent = "";
    var service = catalog.filter(function (s) { return s.name === name; })[0];
    if (!service) { return; }
    if (service.input === null) {
      var raw = el("textarea", {rows: "3", placeholder: "{}"});
      raw.name = "__raw";
      box.appendChild(el("label", {text: "input (JSON)"}, [raw]));
    } else {
      service.input.forEach(function (field) { box.appendChild(inputFor(field)); });
    }
  }
  $("invoke-service").addEventListener("change", showFields);
  $("invoke-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var data = {}, result = $("invoke-result");
    try {
      Array.prototype.forEach.call($("invoke-fields").querySelectorAll("[name]"), function (input) {
        var value = input.value, type = input.getAttribute("data-type");
        if (input.name === "__raw") { data = value.trim() ? JSON.parse(value) : null; return; }
        if (value === "") { return; }
        if (type === "integer" || type === "number") { value = Number(value); }
        else if (type === "boolean") { value = value === "true"; }
        else if (type === "object" || type === "array") { value = JSON.parse(value); }
        data[input.name] = value;
      });
    } catch (error) {
      result.className = "result bad"; result.textContent = "Not JSON: " + error.message; return;
    }
    result.className = "result"; result.textContent = "…";
    send({op: "invoke", id: nextId++, service: $("invoke-service").value, data: data});
  });
  function invoked(frame) {
    var result = $("invoke-result");
    result.className = frame.op === "ok" ? "result" : "result bad";
    result.textContent = frame.op === "ok" ? JSON.stringify(frame.data, null, 2) :
      frame.code + ": " + frame.details + (frame.errors && frame.errors.length ? "\n" + JSON.stringify(frame.errors) : "");
  }
  function setCatalog(frame) {
    catalog = frame.services;
    var select = $("invoke-service"), chosen = select.value;
    select.textContent = "";
    catalog.forEach(function (s) { select.appendChild(el("option", {value: s.name, text: s.name})); });
    if (chosen) { select.value = chosen; }
    showFields();
  }

  // -- the WebSocket ----------------------------------------------------------------------------
  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(frame)); }
  }
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/broker/admin/ws");
    socket.onopen = function () { retry = 500; setStatus("live", "live"); };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.op === "snapshot") { render(frame); }
      else if (frame.op === "catalog") { setCatalog(frame); }
      else if (frame.op === "message") { tailed(frame); }
      else if (frame.op === "tailing") { $("tail-state").textContent = frame.pattern ? "tailing " + frame.pattern : "stopped"; }
      else if (frame.op === "ok" || (frame.op === "error" && frame.id)) { invoked(frame); }
      else if (frame.op === "error") { $("tail-state").textContent = frame.details; }
    };
    socket.onclose = function () {
      setStatus("reconnecting", "down");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  connect();
}());
