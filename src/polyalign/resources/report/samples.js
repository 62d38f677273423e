// PolyAlign report: the sample browser. Reads the JSON of #sb-data; renders one page of items with textContent
// only (no HTML from the data is ever parsed). No network, no dependencies.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sb-data").textContent);
  var methods = data.methods, items = data.items;
  var FILTERS = [["bucket", "bucket"], ["context", "context group (" + data.context_key + ")"],
                 ["language", "language"], ["track", "track"]];
  var state = {page: 0, size: 20, shown: methods.slice(), query: "", cutOnly: false};
  FILTERS.forEach(function (f) { state[f[0]] = ""; });
  var matches = [];
  var haystacks = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function distinct(key) {
    var seen = {};
    items.forEach(function (it) { seen[it[key]] = (seen[it[key]] || 0) + 1; });
    return Object.keys(seen).sort().map(function (k) { return [k, seen[k]]; });
  }

  function haystack(i) {
    if (haystacks === null) haystacks = new Array(items.length);
    if (haystacks[i] === undefined) {
      var it = items[i], parts = [it.id, it.passage, it.human[0]];
      it.turns.forEach(function (t) { parts.push(t[1]); });
      it.answers.forEach(function (a) { if (a) parts.push(a[0]); });
      haystacks[i] = parts.join("\n").toLowerCase();
    }
    return haystacks[i];
  }

  function visibleMethodIdx() {
    return methods.map(function (m, k) { return k; }).filter(function (k) {
      return state.shown.indexOf(methods[k]) >= 0;
    });
  }

  function filter() {
    var q = state.query.toLowerCase(), shown = visibleMethodIdx();
    matches = [];
    for (var i = 0; i < items.length; i++) {
      var it = items[i], ok = true;
      for (var f = 0; f < FILTERS.length && ok; f++) {
        var key = FILTERS[f][0];
        if (state[key] && it[key] !== state[key]) ok = false;
      }
      if (ok && state.cutOnly) {
        ok = shown.some(function (k) { return it.answers[k] && it.answers[k][1] === "length"; });
      }
      if (ok && q && haystack(i).indexOf(q) < 0) ok = false;
      if (ok) matches.push(i);
    }
  }

  function answerCell(name, cls, ans) {
    var box = el("div", {"class": "sb-answer " + cls, "data-method": name});
    var label = el("div", {"class": "sb-label"});
    label.appendChild(el("span", {}, name));
    if (ans === null) {
      box.appendChild(label);
      box.appendChild(el("div", {"class": "sb-text sb-missing"}, "no prediction for this item"));
      return box;
    }
    var info = "length " + ans[ans.length - 1];
    if (cls !== "human") {
      info += ans[1] === "length" ? " · cut at max_new_tokens" : ans[1] === "stop" ? " · stopped" : " · finish unknown";
    }
    label.appendChild(el("span", {"class": ans[1] === "length" ? "sb-cut sb-finish" : "sb-finish"}, info));
    box.appendChild(label);
    box.appendChild(el("div", {"class": "sb-text"}, ans[0]));
    return box;
  }

  function itemCard(i) {
    var it = items[i], card = el("article", {"class": "sb-item", "data-id": it.id, "data-bucket": it.bucket});
    var head = el("div", {"class": "sb-head"});
    head.appendChild(el("b", {}, it.id + " "));
    [it.bucket, it.context, it.language, it.track].forEach(function (v) {
      head.appendChild(el("span", {"class": "sb-tag"}, v));
    });
    card.appendChild(head);
    var last = it.turns.length - 1;
    it.turns.forEach(function (t, k) {
      if (k === last && it.passage) {
        var p = el("div", {"class": "sb-turn passage"});
        p.appendChild(el("span", {"class": "sb-role"}, "context passage (sent with the prompt)"));
        p.appendChild(document.createTextNode(it.passage));
        card.appendChild(p);
      }
      var turn = el("div", {"class": "sb-turn " + t[0] + (k === last ? " prompt" : "")});
      turn.appendChild(el("span", {"class": "sb-role"}, k === last ? "prompt (user)" : t[0] + " · turn " + (k + 1)));
      turn.appendChild(document.createTextNode(t[1]));
      card.appendChild(turn);
    });
    var grid = el("div", {"class": "sb-answers"});
    grid.appendChild(answerCell("human", "human", it.human));
    visibleMethodIdx().forEach(function (k) { grid.appendChild(answerCell(methods[k], "method", it.answers[k])); });
    card.appendChild(grid);
    return card;
  }

  function render() {
    var rows = document.getElementById("sb-rows"), pager = document.getElementById("sb-pager");
    var pages = Math.max(1, Math.ceil(matches.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var from = state.page * state.size, to = Math.min(matches.length, from + state.size);
    rows.textContent = "";
    var frag = document.createDocumentFragment();
    for (var j = from; j < to; j++) frag.appendChild(itemCard(matches[j]));
    rows.appendChild(frag);
    document.getElementById("sb-status").textContent = matches.length
      ? "items " + (from + 1) + "–" + to + " of " + matches.length + " matching (" + items.length + " in the suite)"
      : "no item matches (" + items.length + " in the suite)";
    pager.textContent = "";
    var prev = el("button", {"type": "button", "id": "sb-prev"}, "‹ previous");
    var next = el("button", {"type": "button", "id": "sb-next"}, "next ›");
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    prev.addEventListener("click", function () { state.page--; render(); });
    next.addEventListener("click", function () { state.page++; render(); });
    pager.appendChild(prev);
    pager.appendChild(el("span", {}, "page " + (state.page + 1) + " of " + pages));
    pager.appendChild(next);
  }

  function update() { state.page = 0; filter(); render(); }

  function controls() {
    var box = document.getElementById("sb-controls");
    FILTERS.forEach(function (f) {
      var label = el("label", {}, f[1] + " ");
      var select = el("select", {"id": "sb-" + f[0]});
      select.appendChild(el("option", {"value": ""}, "all"));
      distinct(f[0]).forEach(function (v) { select.appendChild(el("option", {"value": v[0]}, v[0] + " (" + v[1] + ")")); });
      select.addEventListener("change", function () { state[f[0]] = select.value; update(); });
      label.appendChild(select);
      box.appendChild(label);
    });
    var set = el("fieldset", {"id": "sb-methods"});
    set.appendChild(el("span", {}, "methods:"));
    methods.forEach(function (m) {
      var label = el("label", {}), box2 = el("input", {"type": "checkbox", "value": m});
      box2.checked = true;
      box2.addEventListener("change", function () {
        state.shown = Array.prototype.filter.call(set.querySelectorAll("input"), function (c) { return c.checked; })
          .map(function (c) { return c.value; });
        update();
      });
      label.appendChild(box2);
      label.appendChild(document.createTextNode(" " + m));
      set.appendChild(label);
    });
    box.appendChild(set);
    var cut = el("label", {}), cutBox = el("input", {"type": "checkbox", "id": "sb-cut"});
    cutBox.addEventListener("change", function () { state.cutOnly = cutBox.checked; update(); });
    cut.appendChild(cutBox);
    cut.appendChild(document.createTextNode(" only items a shown method cut at max_new_tokens"));
    box.appendChild(cut);
    var search = el("input", {"type": "search", "id": "sb-search", "placeholder": "search prompts and answers"});
    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.query = search.value; update(); }, 150);
    });
    search.addEventListener("change", function () { clearTimeout(timer); state.query = search.value; update(); });
    box.appendChild(search);
    var size = el("select", {"id": "sb-size"});
    [10, 20, 50, 100].forEach(function (n) {
      var o = el("option", {"value": String(n)}, n + " per page");
      if (n === state.size) o.selected = true;
      size.appendChild(o);
    });
    size.addEventListener("change", function () { state.size = parseInt(size.value, 10); update(); });
    box.appendChild(size);
  }

  controls();
  update();
})();
