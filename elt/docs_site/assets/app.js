/* The lineage site of elt.
 *
 * Reads `window.ELT_LINEAGE`, which data.js assigns (elt/docs_site/site.py writes it, with each node's
 * position already computed), and shows: a searchable node list, the graph as SVG (zoom, pan, type
 * filters, upstream/downstream highlight), a page per node (#/node/<id>) and the column coverage
 * (#/coverage). Plain DOM, no library, nothing fetched: it works opened from disk as well as served.
 *
 * Large graphs: only the nodes inside the visible area are drawn, each as an element while there are few
 * enough to read; beyond that, as one path per type and highlight, edges always as a handful of paths.
 */
(function () {
  "use strict";

  const DATA = window.ELT_LINEAGE;
  if (!DATA) {
    document.getElementById("page").textContent =
      "data.js is missing or did not load: run `elt docs generate` again.";
    return;
  }

  const DETAIL_LIMIT = 500; // more visible nodes than this are drawn as plain boxes
  const LIST_LIMIT = 200; // node list entries rendered at once
  const FAR_ZOOM = 0.35; // below this scale the labels are too small to read and are hidden
  const MIN_FOCUS_ZOOM = 0.5; // focusing a node never zooms out further: its neighbours stay legible
  const W = DATA.size.node_width;
  const H = DATA.size.node_height;

  const nodes = DATA.nodes;
  const byId = new Map();
  const parents = nodes.map(() => []);
  const children = nodes.map(() => []);
  nodes.forEach((n, i) => {
    n.index = i;
    byId.set(n.id, n);
  });
  for (const [s, t] of DATA.edges) {
    children[s].push(t);
    parents[t].push(s);
  }
  const typeOrder = new Map(DATA.types.map((t, i) => [t, i]));

  const state = {
    query: "",
    hidden: new Set(),
    selected: null, // index of the selected node
    highlight: "both", // both | up | down | none
    view: { x: 0, y: 0, k: 1 },
  };

  const $ = (id) => document.getElementById(id);
  const svg = $("graph");
  const SVG_NS = svg.namespaceURI;
  const viewport = $("viewport");
  const nodeLayer = $("nodes");
  const bulkLayer = $("bulk");
  const page = $("page");

  // ---------------------------------------------------------------- small helpers

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(typeof kid === "object" ? kid : String(kid));
    }
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  const nodeHref = (id) => "#/node/" + encodeURIComponent(id);
  const fmtInt = (v) => (v === null || v === undefined ? "" : Number(v).toLocaleString("en-US"));
  const fmtSeconds = (v) => (v === null || v === undefined ? "" : Number(v).toFixed(2) + " s");
  const plural = (n, word, many) => fmtInt(n) + " " + (n === 1 ? word : many || word + "s");

  function refNode(ref) {
    const target = ref[0];
    return typeof target === "number" ? nodes[target] : byId.get(target) || null;
  }

  function badge(type) {
    return el("span", { class: "badge type-" + type }, type);
  }

  function statusBadge(status) {
    return el("span", { class: "status status-" + String(status).toLowerCase() }, status);
  }

  function nodeLink(n, label) {
    return el("a", { href: nodeHref(n.id), class: "node-link", "data-node-id": n.id }, label || n.name);
  }

  function refLink(ref) {
    const n = refNode(ref);
    const kind = el("span", { class: "kind kind-" + ref[2] }, ref[2]);
    const text = el("span", { class: "ref" }, el("span", { class: "ref-node" }, n ? n.name : String(ref[0])), ".",
      el("span", { class: "ref-col" }, ref[1]));
    if (!n) return el("span", { class: "colref missing", "data-column": ref[1], "data-kind": ref[2] }, kind, text);
    return el("a", { class: "colref", href: nodeHref(n.id), "data-node-id": n.id, "data-column": ref[1],
      "data-kind": ref[2], title: n.id + " · " + ref[1] }, kind, text);
  }

  function keyValues(value) {
    if (value === null || typeof value !== "object") return String(value);
    if (Array.isArray(value)) {
      return value.every((v) => v === null || typeof v !== "object")
        ? value.join(", ") : el("ul", null, value.map((v) => el("li", null, keyValues(v))));
    }
    const keys = Object.keys(value);
    if (keys.length === 2 && "count" in value && "period" in value) {
      return value.count + " " + value.period + (value.count === 1 ? "" : "s");
    }
    return el("dl", { class: "kv" }, keys.map((k) => [el("dt", null, k), el("dd", null, keyValues(value[k]))]));
  }

  // ---------------------------------------------------------------- search and the node list

  function searchKeys(n) {
    if (n.searchText === undefined) {
      n.searchText = (n.name + "\n" + n.id + "\n" + n.type).toLowerCase();
      n.columnNames = (n.columns || []).map((c) => c.name.toLowerCase());
    }
  }

  // A rank (lower first) and the columns that matched, or null when a term matches nothing of the node.
  function match(n, query, terms) {
    searchKeys(n);
    const matchedColumns = [];
    let onColumns = false;
    for (const term of terms) {
      if (n.searchText.includes(term)) continue;
      const hits = n.columnNames.filter((c) => c.includes(term));
      if (!hits.length) return null;
      onColumns = true;
      for (const h of hits) if (!matchedColumns.includes(h)) matchedColumns.push(h);
    }
    const name = n.name.toLowerCase();
    let rank = 3;
    if (onColumns) rank = 4;
    else if (name === query) rank = 0;
    else if (name.startsWith(query)) rank = 1;
    else if (name.includes(query)) rank = 2;
    return { rank, columns: matchedColumns };
  }

  function searchResults() {
    const query = state.query.trim().toLowerCase();
    const terms = query.split(/\s+/).filter(Boolean);
    const results = [];
    for (const n of nodes) {
      if (state.hidden.has(n.type)) continue;
      if (!terms.length) {
        results.push({ node: n, rank: 0, columns: [] });
        continue;
      }
      const m = match(n, query, terms);
      if (m) results.push({ node: n, rank: m.rank, columns: m.columns });
    }
    results.sort((a, b) => a.rank - b.rank
      || typeOrder.get(a.node.type) - typeOrder.get(b.node.type)
      || (a.node.name < b.node.name ? -1 : a.node.name > b.node.name ? 1 : 0));
    return results;
  }

  let lastResults = [];

  function renderList() {
    const results = searchResults();
    lastResults = results;
    const list = $("node-list");
    const items = results.slice(0, LIST_LIMIT).map(({ node, columns }) => {
      const cols = columns.length
        ? el("span", { class: "cols" }, "columns: " + columns.slice(0, 4).join(", ")
          + (columns.length > 4 ? ", …" : "")) : null;
      return el("li", { "data-node-id": node.id, "data-type": node.type,
        class: node.index === state.selected ? "selected" : null },
      el("a", { href: nodeHref(node.id), title: node.id }, badge(node.type),
        el("span", { class: "name" }, node.name)), cols);
    });
    list.replaceChildren(...items);
    const shown = nodes.length - nodes.filter((n) => state.hidden.has(n.type)).length;
    let text = state.query.trim()
      ? plural(results.length, "match", "matches") + " among " + plural(shown, "node")
      : plural(shown, "node");
    if (results.length > LIST_LIMIT) text += " · first " + LIST_LIMIT + " listed, search to narrow";
    $("list-count").textContent = text;
  }

  function renderFilters() {
    const counts = new Map();
    for (const n of nodes) counts.set(n.type, (counts.get(n.type) || 0) + 1);
    const box = $("type-filters");
    for (const type of DATA.types) {
      const input = el("input", { type: "checkbox", "data-type": type, checked: !state.hidden.has(type),
        onchange: (e) => {
          if (e.target.checked) state.hidden.delete(type);
          else state.hidden.add(type);
          renderList();
          scheduleGraph();
        } });
      box.append(el("label", { class: "type-filter", "data-type": type }, input,
        el("span", { class: "swatch type-" + type }), type, el("span", { class: "count" }, fmtInt(counts.get(type)))));
    }
  }

  // ---------------------------------------------------------------- the graph

  let highlightCache = null;

  function reach(start, next) {
    const seen = new Set();
    const stack = [start];
    while (stack.length) {
      const i = stack.pop();
      for (const j of next[i]) {
        if (!seen.has(j)) {
          seen.add(j);
          stack.push(j);
        }
      }
    }
    seen.delete(start);
    return seen;
  }

  function highlighted() {
    if (state.selected === null || state.highlight === "none") return null;
    const key = state.selected + ":" + state.highlight;
    if (!highlightCache || highlightCache.key !== key) {
      const up = state.highlight === "down" ? new Set() : reach(state.selected, parents);
      const down = state.highlight === "up" ? new Set() : reach(state.selected, children);
      highlightCache = { key, up, down };
    }
    return highlightCache;
  }

  function hlOf(i, hl) {
    if (i === state.selected) return "self";
    if (!hl) return "";
    if (hl.up.has(i)) return "up";
    if (hl.down.has(i)) return "down";
    return "dim";
  }

  function applyView() {
    const { x, y, k } = state.view;
    viewport.setAttribute("transform", "translate(" + x + "," + y + ") scale(" + k + ")");
    svg.classList.toggle("far", k < FAR_ZOOM);
    scheduleGraph();
  }

  let frame = 0;

  function scheduleGraph() {
    if (!frame) frame = requestAnimationFrame(() => {
      frame = 0;
      renderGraph();
    });
  }

  const drawn = new Map(); // node index -> its <g> element

  function renderGraph() {
    const box = svg.getBoundingClientRect();
    const { x, y, k } = state.view;
    const x0 = -x / k - W;
    const y0 = -y / k - H;
    const x1 = (box.width - x) / k;
    const y1 = (box.height - y) / k;
    const hl = highlighted();
    const visible = [];
    for (const n of nodes) {
      if (state.hidden.has(n.type) || n.x > x1 || n.x < x0 || n.y > y1 || n.y < y0) continue;
      visible.push(n);
    }

    const paths = { base: [], dim: [], up: [], down: [] };
    for (const [s, t] of DATA.edges) {
      const a = nodes[s];
      const b = nodes[t];
      if (state.hidden.has(a.type) || state.hidden.has(b.type)) continue;
      if (Math.max(a.x, b.x) < x0 || Math.min(a.x, b.x) > x1 || Math.max(a.y, b.y) < y0 || Math.min(a.y, b.y) > y1) continue;
      let group = "base";
      if (hl) {
        // An edge is on the upstream side when it ends in the selection or one of its ancestors (its
        // source is then an ancestor too), downstream likewise from the selection or a descendant.
        const hs = hlOf(s, hl);
        const ht = hlOf(t, hl);
        if (hs === "up" && (ht === "up" || ht === "self")) group = "up";
        else if ((hs === "down" || hs === "self") && ht === "down") group = "down";
        else group = "dim";
      }
      const sx = a.x + W;
      const sy = a.y + H / 2;
      const tx = b.x;
      const ty = b.y + H / 2;
      const mx = Math.round((sx + tx) / 2);
      paths[group].push("M" + sx + "," + sy + "C" + mx + "," + sy + " " + mx + "," + ty + " " + tx + "," + ty);
    }
    for (const group of Object.keys(paths)) $("edges-" + group).setAttribute("d", paths[group].join(""));

    const detailed = visible.length <= DETAIL_LIMIT;
    // Zoomed out, the selection and its lineage are still drawn one by one when they are few enough.
    const marks = visible.map((n) => hlOf(n.index, hl));
    const lineageOnly = !detailed && marks.filter((m) => m && m !== "dim").length <= DETAIL_LIMIT;
    const wanted = new Set();
    const boxes = new Map();
    visible.forEach((n, v) => {
      const mark = marks[v];
      if (detailed || (lineageOnly && mark && mark !== "dim")) {
        wanted.add(n.index);
        drawNode(n, mark);
      } else {
        const key = n.type + " " + (mark || "plain");
        if (!boxes.has(key)) boxes.set(key, []);
        boxes.get(key).push("M" + n.x + "," + n.y + "h" + W + "v" + H + "h-" + W + "z");
      }
    });
    for (const [i, g] of drawn) {
      if (!wanted.has(i)) {
        g.remove();
        drawn.delete(i);
      }
    }
    bulkLayer.replaceChildren(...[...boxes].map(([key, parts]) => {
      const [type, mark] = key.split(" ");
      return svgEl("path", { class: "bulk type-" + type + " hl-" + mark, d: parts.join("") });
    }));
    svg.dataset.mode = detailed ? "detailed" : "overview";
    $("graph-status").textContent = detailed
      ? plural(visible.length, "node") + " in view"
      : plural(visible.length, "node") + " in view, drawn as boxes: zoom in to read names";
  }

  function drawNode(n, mark) {
    let g = drawn.get(n.index);
    if (!g) {
      g = svgEl("g", { "data-node-id": n.id, transform: "translate(" + n.x + "," + n.y + ")" });
      const rect = svgEl("rect", { width: W, height: H, rx: 4 });
      const label = svgEl("text", { x: 8, y: H / 2 + 4 });
      const maxChars = Math.floor((W - 14) / 6.3); // about the width of an 11px character
      label.textContent = n.name.length > maxChars ? n.name.slice(0, maxChars - 1) + "…" : n.name;
      const title = svgEl("title");
      title.textContent = n.name + " (" + n.type + ")";
      g.append(rect, label, title);
      nodeLayer.append(g);
      drawn.set(n.index, g);
    }
    const cls = "node type-" + n.type + (mark ? " hl-" + mark : "");
    if (g.getAttribute("class") !== cls) g.setAttribute("class", cls);
    g.dataset.hl = mark;
  }

  function bounds(list) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of list) {
      x0 = Math.min(x0, n.x);
      y0 = Math.min(y0, n.y);
      x1 = Math.max(x1, n.x + W);
      y1 = Math.max(y1, n.y + H);
    }
    return x0 === Infinity ? null : { x0, y0, x1, y1 };
  }

  function minZoom() {
    const b = bounds(nodes);
    const box = svg.getBoundingClientRect();
    if (!b || !box.width) return 0.01;
    return Math.min(0.5, 0.5 * Math.min(box.width / (b.x1 - b.x0), box.height / (b.y1 - b.y0)));
  }

  // Show `list` whole if that needs no less than `floor` zoom; else centre on `centre` at `floor`.
  function fitTo(list, floor, centre) {
    const b = bounds(list);
    const box = svg.getBoundingClientRect();
    if (!b || !box.width || !box.height) return;
    const pad = 40;
    let k = Math.min(1.2, (box.width - 2 * pad) / (b.x1 - b.x0), (box.height - 2 * pad) / (b.y1 - b.y0));
    let cx = (b.x0 + b.x1) / 2;
    let cy = (b.y0 + b.y1) / 2;
    if (floor && k < floor) {
      k = floor;
      if (centre) {
        cx = centre.x + W / 2;
        cy = centre.y + H / 2;
      }
    }
    k = Math.max(k, minZoom());
    state.view = { x: box.width / 2 - cx * k, y: box.height / 2 - cy * k, k };
    applyView();
  }

  function shownNodes() {
    return nodes.filter((n) => !state.hidden.has(n.type));
  }

  function focusSelection() {
    if (state.selected === null) return;
    const n = nodes[state.selected];
    const hl = highlighted();
    const list = [n];
    if (hl) for (const i of [...hl.up, ...hl.down]) if (!state.hidden.has(nodes[i].type)) list.push(nodes[i]);
    fitTo(list, MIN_FOCUS_ZOOM, n);
  }

  function zoomAt(px, py, factor) {
    const { x, y, k } = state.view;
    const next = Math.min(4, Math.max(minZoom(), k * factor));
    state.view = { x: px - (px - x) * (next / k), y: py - (py - y) * (next / k), k: next };
    applyView();
  }

  function nodeAt(px, py) {
    const { x, y, k } = state.view;
    const wx = (px - x) / k;
    const wy = (py - y) / k;
    for (let i = nodes.length - 1; i >= 0; i--) {
      const n = nodes[i];
      if (!state.hidden.has(n.type) && wx >= n.x && wx <= n.x + W && wy >= n.y && wy <= n.y + H) return n;
    }
    return null;
  }

  function setupGraphEvents() {
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = svg.getBoundingClientRect();
      zoomAt(e.clientX - box.left, e.clientY - box.top, Math.exp(-e.deltaY * 0.0015));
    }, { passive: false });

    let drag = null;
    svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { id: e.pointerId, px: e.clientX, py: e.clientY, x: state.view.x, y: state.view.y, moved: false };
      svg.setPointerCapture(e.pointerId);
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const dx = e.clientX - drag.px;
      const dy = e.clientY - drag.py;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      svg.classList.add("dragging");
      state.view = { x: drag.x + dx, y: drag.y + dy, k: state.view.k };
      applyView();
    });
    const end = (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const wasClick = !drag.moved && e.type === "pointerup";
      drag = null;
      svg.classList.remove("dragging");
      if (wasClick) {
        const box = svg.getBoundingClientRect();
        const n = nodeAt(e.clientX - box.left, e.clientY - box.top);
        if (n) location.hash = nodeHref(n.id);
      }
    };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);

    const centre = () => {
      const box = svg.getBoundingClientRect();
      return [box.width / 2, box.height / 2];
    };
    $("zoom-in").addEventListener("click", () => zoomAt(...centre(), 1.25));
    $("zoom-out").addEventListener("click", () => zoomAt(...centre(), 0.8));
    $("zoom-fit").addEventListener("click", () => fitTo(shownNodes()));
    for (const button of document.querySelectorAll("#highlight-tools button")) {
      button.addEventListener("click", () => {
        state.highlight = button.dataset.mode;
        markHighlightButtons();
        focusSelection();
        scheduleGraph();
      });
    }
    window.addEventListener("resize", scheduleGraph);
  }

  function markHighlightButtons() {
    $("highlight-tools").hidden = state.selected === null;
    for (const button of document.querySelectorAll("#highlight-tools button")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === state.highlight));
    }
  }

  // ---------------------------------------------------------------- pages

  function setPage(content, title) {
    page.replaceChildren(content);
    page.scrollTop = 0;
    document.title = (title ? title + " · " : "") + DATA.project + " lineage";
  }

  function section(id, title, ...body) {
    return el("section", { id, class: "block" }, el("h2", null, title), body);
  }

  let downstreamColumns = null; // "index\u0000column" -> [[index, column, kind], ...], built on first need

  function columnUsers(n, column) {
    if (!downstreamColumns) {
      downstreamColumns = new Map();
      for (const m of nodes) {
        for (const c of m.columns || []) {
          for (const ref of c.upstream || []) {
            const source = refNode(ref);
            if (!source) continue;
            const key = source.index + "\u0000" + ref[1].toLowerCase();
            if (!downstreamColumns.has(key)) downstreamColumns.set(key, []);
            downstreamColumns.get(key).push([m.index, c.name, ref[2]]);
          }
        }
      }
    }
    return downstreamColumns.get(n.index + "\u0000" + column.toLowerCase()) || [];
  }

  function lastRun(n) {
    return n.runs && n.runs.length ? n.runs[0] : null;
  }

  function renderNodePage(n) {
    const run = lastRun(n);
    const props = [
      ["Type", n.type], ["Relation", n.relation], ["Materialized", n.materialized], ["File", n.path],
    ].filter(([, v]) => v);
    const head = el("header", { class: "node-head" }, badge(n.type), el("h1", null, n.name),
      el("code", { class: "node-id" }, n.id));
    const facts = el("dl", { class: "facts" }, props.map(([k, v]) => [el("dt", null, k),
      el("dd", null, k === "Relation" || k === "File" ? el("code", null, v) : v)]),
    run ? [el("dt", null, "Last run"), el("dd", null, statusBadge(run.status), " ", run.started_at || "")] : null);
    const content = el("article", { id: "node-page", "data-node-id": n.id, "data-type": n.type }, head,
      n.description ? el("p", { class: "description" }, n.description) : null,
      facts, neighbours(n), columnsSection(n), indirectSection(n), testsSection(n), freshnessSection(n),
      runsSection(n), sqlSection(n), n.meta && Object.keys(n.meta).length ? section("meta", "Meta", keyValues(n.meta)) : null);
    setPage(content, n.name);
  }

  function linkList(indices) {
    if (!indices.length) return el("span", { class: "none" }, "none");
    const sorted = indices.map((i) => nodes[i]).sort((a, b) => typeOrder.get(a.type) - typeOrder.get(b.type)
      || (a.name < b.name ? -1 : 1));
    return el("ul", { class: "links" }, sorted.map((m) => el("li", null, badge(m.type), nodeLink(m))));
  }

  function neighbours(n) {
    return el("section", { id: "neighbours", class: "block two" },
      el("div", { id: "parents" }, el("h2", null, "Upstream nodes"), linkList(parents[n.index])),
      el("div", { id: "children" }, el("h2", null, "Downstream nodes"), linkList(children[n.index])));
  }

  function columnsSection(n) {
    const columns = n.columns || [];
    if (!columns.length) return section("columns", "Columns", el("p", { class: "none" }, "No columns known."));
    const rows = columns.map((c) => {
      const ups = c.upstream || [];
      const lineage = [ups.map((ref) => refLink(ref))];
      if (c.unresolved) lineage.push(el("span", { class: "unresolved" }, el("b", null, "unresolved"), " " + c.unresolved));
      if (!ups.length && !c.unresolved) lineage.push(el("span", { class: "none" }, "—"));
      const users = columnUsers(n, c.name);
      let down = el("span", { class: "none" }, "—");
      if (users.length) {
        const links = users.map(([i, name, kind]) => refLink([i, name, kind]));
        down = users.length <= 3 ? links : el("details", null, el("summary", null, plural(users.length, "column")), links);
      }
      return el("tr", { "data-column": c.name, class: c.unresolved ? "is-unresolved" : null },
        el("td", { class: "col-name" }, el("code", null, c.name)),
        el("td", { class: "col-type" }, c.data_type || ""),
        el("td", { class: "col-description" }, c.description || ""),
        el("td", { class: "upstream" }, lineage),
        el("td", { class: "downstream" }, down));
    });
    const table = el("table", { id: "column-lineage" },
      el("thead", null, el("tr", null, ["Column", "Type", "Description", "Comes from", "Used by"].map((h) => el("th", null, h)))),
      el("tbody", null, rows));
    return section("columns", "Columns (" + columns.length + ")", el("div", { class: "scroll" }, table));
  }

  function indirectSection(n) {
    if (!n.indirect || !n.indirect.length) return null;
    return section("indirect", "Rows decided by",
      el("p", { class: "hint" }, "Columns that filter, join or group this node's rows; they bear on every column."),
      el("ul", { class: "refs" }, n.indirect.map((ref) => el("li", null, refLink(ref)))));
  }

  function testsSection(n) {
    const tests = n.tests || [];
    if (!tests.length) return section("tests", "Tests", el("p", { class: "none" }, "No tests on this node."));
    return section("tests", "Tests (" + tests.length + ")", el("ul", { class: "tests" }, tests.map((id) => {
      const t = byId.get(id);
      if (!t) return el("li", { "data-node-id": id }, el("code", null, id));
      const run = lastRun(t);
      return el("li", { "data-node-id": id }, run ? statusBadge(run.status) : el("span", { class: "status status-none" }, "not run"),
        " ", nodeLink(t));
    })));
  }

  function freshnessSection(n) {
    if (!n.freshness && n.type !== "source") return null;
    return section("freshness", "Freshness", n.freshness ? keyValues(n.freshness)
      : el("p", { class: "none" }, "No freshness rule."));
  }

  function runsSection(n) {
    const runs = n.runs || [];
    if (!runs.length) return section("runs", "Last runs", el("p", { class: "none" }, "No runs recorded for this node."));
    const table = el("table", { class: "runs" },
      el("thead", null, el("tr", null, ["Started", "Status", "Rows", "Time", "Message", "Run"].map((h) => el("th", null, h)))),
      el("tbody", null, runs.map((r) => el("tr", { "data-status": r.status },
        el("td", null, r.started_at || ""), el("td", { class: "run-status" }, statusBadge(r.status)),
        el("td", { class: "num run-rows" }, fmtInt(r.rows)), el("td", { class: "num run-seconds" }, fmtSeconds(r.seconds)),
        el("td", { class: "run-message" }, r.message || ""), el("td", null, el("code", null, r.run_id))))));
    return section("runs", "Last runs", el("div", { class: "scroll" }, table));
  }

  function sqlSection(n) {
    if (!n.sql && !n.raw_sql) return null;
    return section("sql", "SQL",
      n.sql ? el("details", { open: true }, el("summary", null, "Compiled"), el("pre", { id: "compiled-sql" }, el("code", null, n.sql))) : null,
      n.raw_sql ? el("details", { open: !n.sql }, el("summary", null, "As written"), el("pre", { id: "raw-sql" }, el("code", null, n.raw_sql))) : null);
  }

  function coverageText() {
    const c = DATA.coverage;
    return (100 * c.ratio).toFixed(1) + "% (" + fmtInt(c.resolved) + " / " + fmtInt(c.columns) + ")";
  }

  function renderCoverage() {
    const c = DATA.coverage;
    const reasons = new Map();
    for (const u of c.unresolved) reasons.set(u.reason, (reasons.get(u.reason) || 0) + 1);
    const filter = el("input", { id: "coverage-filter", type: "search", placeholder: "Filter by node, column or reason" });
    const rows = c.unresolved.map((u) => {
      const n = byId.get(u.node);
      return el("tr", { "data-node-id": u.node, "data-column": u.column },
        el("td", null, n ? nodeLink(n) : el("code", null, u.node)), el("td", null, el("code", null, u.column)),
        el("td", { class: "reason" }, u.reason));
    });
    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const row of rows) row.hidden = Boolean(q) && !row.textContent.toLowerCase().includes(q);
    });
    const common = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 10);
    const content = el("article", { id: "coverage" }, el("h1", null, "Column lineage coverage"),
      el("p", { class: "coverage-total" }, el("strong", { id: "coverage-resolved" }, fmtInt(c.resolved)), " of ",
        el("strong", { id: "coverage-columns" }, fmtInt(c.columns)), " columns traced to their upstream columns: ",
        el("strong", { id: "coverage-ratio" }, (100 * c.ratio).toFixed(1) + "%")),
      el("div", { class: "bar" }, el("span", { style: "width:" + (100 * c.ratio).toFixed(2) + "%" })),
      c.unresolved.length ? [
        section("reasons", "Most common reasons", el("table", null, el("tbody", null,
          common.map(([reason, count]) => el("tr", null, el("td", { class: "num" }, fmtInt(count)), el("td", null, reason)))))),
        section("unresolved-columns", "Unresolved columns (" + fmtInt(c.unresolved.length) + ")", filter,
          el("div", { class: "scroll" }, el("table", { id: "unresolved" },
            el("thead", null, el("tr", null, el("th", null, "Node"), el("th", null, "Column"), el("th", null, "Reason"))),
            el("tbody", null, rows)))),
      ] : el("p", null, "Every column is traced."));
    setPage(content, "Coverage");
  }

  function renderHome() {
    const counts = DATA.types.map((t) => [t, nodes.filter((n) => n.type === t).length]);
    const content = el("article", { id: "overview" }, el("h1", null, DATA.project),
      el("p", null, plural(nodes.length, "node") + ", " + plural(DATA.edges.length, "edge")
        + (DATA.environment ? ", environment " + DATA.environment : "") + "."),
      el("ul", { class: "type-counts" }, counts.map(([t, c]) => el("li", null, badge(t), " " + fmtInt(c)))),
      el("p", null, "Column lineage: ", el("a", { href: "#/coverage" }, coverageText()), " of the columns traced."),
      DATA.notes && DATA.notes.length ? section("notes", "Notes from building the lineage",
        el("ul", null, DATA.notes.map((note) => el("li", null, note)))) : null,
      el("p", { class: "hint" }, "Search on the left (names, ids, types, column names), or click a node in the graph. "
        + "Drag to pan, scroll or use the buttons to zoom. A node's page shows its columns and where each comes from, "
        + "its tests and its last runs."));
    setPage(content);
  }

  function renderMissing(id) {
    setPage(el("article", { id: "missing" }, el("h1", null, "Not in this lineage"),
      el("p", null, "No node ", el("code", null, id), " in the lineage of " + DATA.project + ".")));
  }

  // ---------------------------------------------------------------- routing

  function select(index) {
    const changed = state.selected !== index;
    state.selected = index;
    for (const li of document.querySelectorAll("#node-list li.selected")) li.classList.remove("selected");
    if (index !== null) {
      const li = document.querySelector('#node-list li[data-node-id="' + CSS.escape(nodes[index].id) + '"]');
      if (li) li.classList.add("selected");
    }
    markHighlightButtons();
    if (changed && index !== null) focusSelection();
    scheduleGraph();
  }

  function route() {
    const hash = location.hash;
    if (hash.startsWith("#/node/")) {
      let id = hash.slice("#/node/".length);
      try {
        id = decodeURIComponent(id);
      } catch (e) {
        // an id with a stray % is looked up as it is
      }
      const n = byId.get(id);
      if (n) {
        select(n.index);
        renderNodePage(n);
      } else {
        select(null);
        renderMissing(id);
      }
    } else if (hash === "#/coverage") {
      select(null);
      renderCoverage();
    } else {
      select(null);
      renderHome();
    }
  }

  // ---------------------------------------------------------------- start

  function start() {
    document.title = DATA.project + " lineage";
    $("project-name").textContent = DATA.project;
    $("project-env").textContent = DATA.environment ? "environment " + DATA.environment : "";
    $("generated-at").textContent = "generated " + DATA.generated_at;
    $("coverage-summary").textContent = coverageText();
    renderFilters();
    renderList();
    const search = $("search");
    search.addEventListener("input", () => {
      state.query = search.value;
      renderList();
    });
    search.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && lastResults.length) location.hash = nodeHref(lastResults[0].node.id);
      if (e.key === "Escape") {
        search.value = "";
        state.query = "";
        renderList();
      }
    });
    document.addEventListener("keydown", (e) => {
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
      if (e.key === "/" && !typing) {
        e.preventDefault();
        search.focus();
      }
    });
    setupGraphEvents();
    fitTo(shownNodes());
    window.addEventListener("hashchange", route);
    route();
    document.body.dataset.ready = "true";
  }

  start();
})();
