"""The lineage docs site: `generate_site` on hand-built graphs, then `elt docs generate` and `elt docs serve`
on the synced and built sample project, driven in headless Chromium (Debian's, at /usr/bin/chromium)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elt.docs_site import generate_site
from elt.docs_site.layout import LAYER_GAP, layout_graph
from elt.lineage.model import (
    Column,
    ColumnRef,
    Coverage,
    Edge,
    LineageGraph,
    Node,
    RunInfo,
    Unresolved,
)
from tests.conftest import BIN, IN_CI, REPO, run_elt

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"


def read_data(site: Path) -> dict[str, Any]:
    """The value data.js assigns to window.ELT_LINEAGE."""
    text = (site / "data.js").read_text(encoding="utf-8")
    prefix = "window.ELT_LINEAGE = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    return json.loads(text[len(prefix) :].rstrip().rstrip(";"))


def small_graph(order_total_kind: str = "aggregate") -> LineageGraph:
    """stream → source → stg_items → fct_orders (+ a test on it), one unresolved column."""
    nodes = (
        Node("stream:tap-files.order_items", "stream", "tap-files.order_items",
             columns=(Column("line_total", "number"),)),
        Node("source.shop.raw.order_items", "source", "order_items", relation="raw.order_items",
             columns=(Column("line_total", "double", upstream=(
                 ColumnRef("stream:tap-files.order_items", "line_total", "copy"),)),),
             freshness={"warn_after": {"count": 24, "period": "hour"}}),
        Node("model.shop.stg_items", "model", "stg_items", path="models/stg_items.sql",
             sql="select line_total, order_id from raw.order_items",
             columns=(Column("line_total", "decimal(18,2)", "Price times quantity.", upstream=(
                 ColumnRef("source.shop.raw.order_items", "line_total", "transform"),)),
                 Column("order_id", "bigint"))),
        Node("model.shop.fct_orders", "model", "fct_orders", description="One row per order.",
             relation="analytics.fct_orders", materialized="table", path="models/fct_orders.sql",
             sql="select order_id, sum(line_total) as order_total from analytics.stg_items group by 1",
             raw_sql="select order_id, sum(line_total) as order_total from {{ ref('stg_items') }} group by 1",
             columns=(Column("order_total", "decimal(18,2)", upstream=(
                 ColumnRef("model.shop.stg_items", "line_total", order_total_kind),)),
                 Column("mystery", unresolved="select * of an unknown relation")),
             indirect=(ColumnRef("model.shop.stg_items", "order_id", "filter-join"),),
             tests=("test.shop.not_null_fct_orders_order_total",),
             runs=(RunInfo("run-2", "2024-05-02T10:00:00+00:00", "success", 1.25, 42),
                   RunInfo("run-1", "2024-05-01T10:00:00+00:00", "error", 0.5, None, "boom"))),
        Node("test.shop.not_null_fct_orders_order_total", "test", "not_null_fct_orders_order_total",
             runs=(RunInfo("run-2", "2024-05-02T10:00:01+00:00", "pass", 0.1),)),
    )  # fmt: skip
    edges = (
        Edge("stream:tap-files.order_items", "source.shop.raw.order_items"),
        Edge("source.shop.raw.order_items", "model.shop.stg_items"),
        Edge("model.shop.stg_items", "model.shop.fct_orders"),
        Edge("model.shop.fct_orders", "test.shop.not_null_fct_orders_order_total"),
    )
    coverage = Coverage(
        4, 3, (Unresolved("model.shop.fct_orders", "mystery", "select * of an unknown relation"),)
    )
    return LineageGraph("shop", "dev", "2024-05-02T10:00:05+00:00", "abc123", nodes, edges, coverage)


def synthetic_graph(models: int = 1000) -> LineageGraph:
    """About the lineage of a 1,000-model dbt project: 100 sources, models three deep and wide, two tests
    per model, 20 columns per model: 3,100 nodes and 21,000 columns."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    sources = [f"source.big.raw.t{i}" for i in range(100)]
    for sid in sources:
        nodes.append(Node(sid, "source", sid.rsplit(".", 1)[1],
                          columns=tuple(Column(f"c{j}", "varchar") for j in range(10))))  # fmt: skip
    for m in range(models):
        mid = f"model.big.m{m}"
        ups = [sources[m % 100]] if m < 200 else [f"model.big.m{(m * 7 + k * 13) % m}" for k in range(3)]
        columns = tuple(
            Column(f"col_{j}", "integer", "A column.", (ColumnRef(ups[j % len(ups)], f"c{j % 10}", "copy"),))
            for j in range(20)
        )
        sql = "select " + ", ".join(c.name for c in columns) + " from upstream where col_0 > 0\n"
        run = RunInfo("r1", "2024-05-02T10:00:00+00:00", "success", 1.0, 10)
        tests = (f"test.big.a{m}", f"test.big.b{m}")
        nodes.append(Node(mid, "model", f"m{m}", path=f"models/m{m}.sql", sql=sql * 4, raw_sql=sql * 4,
                          columns=columns, tests=tests, runs=(run,)))  # fmt: skip
        edges += [Edge(u, mid) for u in dict.fromkeys(ups)]
        for t in tests:
            nodes.append(Node(t, "test", t.rsplit(".", 1)[1]))
            edges.append(Edge(mid, t))
    total = 20 * models
    return LineageGraph("big", None, "2024-05-02T10:00:00+00:00", "f", tuple(nodes), tuple(edges),
                        Coverage(total, total))  # fmt: skip


# -- the generated files -----------------------------------------------------------------------------


def test_generate_site_writes_an_offline_site_with_the_graph_in_data_js(tmp_path: Path) -> None:
    site = tmp_path / "site"

    result = generate_site(small_graph(), site)

    assert sorted(p.name for p in site.iterdir()) == [
        "app.js",
        "data.js",
        "index.html",
        "site.json",
        "style.css",
    ]
    assert (result.nodes, result.edges, result.columns, result.index) == (5, 4, 6, site / "index.html")
    assert result.coverage == 0.75 and result.generated
    data = read_data(site)
    assert (data["project"], data["environment"]) == ("shop", "dev")
    assert data["types"] == ["stream", "source", "model", "test"]
    ids = [n["id"] for n in data["nodes"]]
    fct = data["nodes"][ids.index("model.shop.fct_orders")]
    [order_total, mystery] = fct["columns"]
    assert order_total["upstream"] == [[ids.index("model.shop.stg_items"), "line_total", "aggregate"]]
    assert mystery == {"name": "mystery", "unresolved": "select * of an unknown relation"}
    assert fct["indirect"] == [[ids.index("model.shop.stg_items"), "order_id", "filter-join"]]
    assert fct["runs"][0] == {
        "run_id": "run-2", "started_at": "2024-05-02T10:00:00+00:00", "status": "success", "seconds": 1.25,
        "rows": 42,
    }  # fmt: skip
    assert fct["tests"] == ["test.shop.not_null_fct_orders_order_total"]
    assert data["coverage"]["unresolved"] == [
        {"node": "model.shop.fct_orders", "column": "mystery", "reason": "select * of an unknown relation"}
    ]
    html = (site / "index.html").read_text()
    assert re.findall(r'(?:src|href)="([^"#]+)"', html) == ["style.css", "data.js", "app.js"]
    for name in ("index.html", "app.js", "style.css"):
        text = (site / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_nodes_are_layered_by_longest_path_and_ordered_to_avoid_crossings(tmp_path: Path) -> None:
    data = read_data(generate_site(small_graph(), tmp_path).out_dir)
    x = {n["name"]: n["x"] for n in data["nodes"]}
    chain = ("tap-files.order_items", "order_items", "stg_items", "fct_orders")
    assert [x[n] // LAYER_GAP for n in chain] == [0, 1, 2, 3]
    # The test sits beside its model, between the model's layer and the next.
    assert x["fct_orders"] < x["not_null_fct_orders_order_total"] < x["fct_orders"] + LAYER_GAP

    # a and b feed y and x crosswise; their input order would cross the edges, barycenters uncross them.
    layout = layout_graph(5, [(0, 3), (1, 2), (0, 4), (3, 4)])  # a, b, x, y, z (z: y is its longest path)
    (_, a), (_, b), (_, xx), (_, yy) = layout.positions[:4]
    assert (a < b) == (yy < xx)
    assert layout.positions[4][0] == 2 * LAYER_GAP


def test_layout_survives_cycles_and_nodes_without_edges() -> None:
    layout = layout_graph(4, [(0, 1), (1, 2), (2, 1)], side=[False, False, False, True])
    assert len(set(layout.positions)) == 4
    assert layout.positions[0][0] < layout.positions[1][0] < layout.positions[2][0]


def test_a_site_of_a_thousand_models_is_written_in_well_under_five_seconds(tmp_path: Path) -> None:
    graph = synthetic_graph()
    assert (len(graph.nodes), sum(len(n.columns) for n in graph.nodes)) == (3100, 21000)

    started = time.perf_counter()
    result = generate_site(graph, tmp_path / "site")
    seconds = time.perf_counter() - started

    assert result.nodes == 3100
    assert seconds < 5, f"generate_site took {seconds:.2f}s"
    assert result.data_bytes < 15_000_000
    positions = {(n["x"], n["y"]) for n in read_data(tmp_path / "site")["nodes"]}
    assert len(positions) == 3100  # no two nodes drawn on top of each other


def test_an_unchanged_site_is_not_rewritten(tmp_path: Path) -> None:
    site = tmp_path / "site"
    generate_site(small_graph(), site)
    before = (site / "data.js").stat().st_mtime_ns

    same = generate_site(small_graph(), site, only_if_changed=True)
    changed = generate_site(small_graph(order_total_kind="transform"), site, only_if_changed=True)

    assert not same.generated
    assert changed.generated and (site / "data.js").stat().st_mtime_ns != before
    assert "transform" in (site / "data.js").read_text()


# -- the sample project in a browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian (never a downloaded one); skipped without it, but not in CI."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed: pip install -e '.[dev]'"
    if reason is None and not CHROMIUM.exists():
        reason = "no /usr/bin/chromium: apt-get install chromium"
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def shop_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The sample project synced, built, and its site generated by `elt docs generate --format json`."""
    from elt.scaffold import create_project

    project = tmp_path_factory.mktemp("docs") / "shop"
    create_project(project)
    run_elt("sync", "tap-files", "target-duckdb", cwd=project)
    run_elt("build", cwd=project)
    generated = json.loads(run_elt("docs", "generate", "--format", "json", cwd=project).stdout)
    return project, generated


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A page at `url` once the site has started, and the list its script errors and failed loads go to."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page, errors


def test_generate_prints_where_the_site_is_and_what_it_holds(shop_site) -> None:
    project, generated = shop_site

    assert generated["path"] == str(project / ".elt" / "site" / "index.html")
    assert generated["nodes"] > 20 and generated["columns"] > 50
    assert 0 < generated["coverage"] <= 1 and generated["seconds"] > 0
    text = run_elt("docs", "generate", cwd=project).stdout
    assert f"wrote {project / '.elt' / 'site' / 'index.html'}" in text
    assert f"{generated['nodes']:,} nodes" in text and "column lineage" in text and "% resolved" in text


def test_the_site_from_disk_finds_fct_orders_and_shows_its_lineage_runs_and_upstream(
    shop_site, browser
) -> None:
    from playwright.sync_api import expect

    project, generated = shop_site
    page, errors = open_page(browser, Path(generated["path"]).as_uri())

    # Search by name, open the node page from the list.
    page.fill("#search", "fct_orders")
    first = page.locator(".node-list li").first
    expect(first).to_have_attribute("data-node-id", "model.elt_demo.fct_orders")
    first.locator("a").click()
    node_page = page.locator('#node-page[data-node-id="model.elt_demo.fct_orders"]')
    expect(node_page).to_be_visible()
    assert page.evaluate("location.hash") == "#/node/model.elt_demo.fct_orders"
    expect(node_page.locator(".facts")).to_contain_text("analytics.fct_orders")

    # Column lineage: order_total is aggregated from stg_order_items.line_total.
    order_total = page.locator('#column-lineage tr[data-column="order_total"] td.upstream')
    expect(order_total).to_contain_text("stg_order_items.line_total")
    ref = order_total.locator(
        'a.colref[data-node-id="model.elt_demo.stg_order_items"][data-column="line_total"]'
    )
    expect(ref).to_have_attribute("data-kind", "aggregate")
    expect(page.locator("#indirect a.colref").first).to_be_visible()

    # Last runs and tests.
    expect(page.locator("#runs tbody tr").first.locator(".run-status")).to_have_text("success")
    expect(page.locator("#tests li").first.locator(".status")).to_have_text("pass")
    expect(page.locator("#compiled-sql")).to_contain_text("stg_order_items")

    # Highlight upstream: stg_order_items is upstream, nothing is downstream.
    page.click("#highlight-upstream")
    expect(page.locator('#graph [data-node-id="model.elt_demo.stg_order_items"]')).to_have_attribute(
        "data-hl", "up"
    )
    expect(page.locator('#graph [data-node-id="model.elt_demo.fct_orders"]')).to_have_attribute(
        "data-hl", "self"
    )
    expect(page.locator('#graph [data-hl="down"]')).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs_site.png"))

    # Filter by type: without tests, neither the graph nor the list shows one.
    page.click("#zoom-fit")
    assert page.locator('#graph [data-node-id^="test."]').count() > 0
    page.uncheck('#type-filters input[data-type="test"]')
    expect(page.locator('#graph [data-node-id^="test."]')).to_have_count(0)
    page.fill("#search", "")
    expect(page.locator('.node-list li[data-type="test"]')).to_have_count(0)
    expect(page.locator('.node-list li[data-type="model"]').first).to_be_visible()

    # Zoom with the buttons and the wheel, pan by dragging the background.
    viewport = page.locator("#viewport")
    before = viewport.get_attribute("transform")
    page.click("#zoom-in")
    expect(viewport).not_to_have_attribute("transform", before)
    box = page.locator("#graph").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + box["height"] - 30)
    zoomed = viewport.get_attribute("transform")
    page.mouse.wheel(0, 400)
    expect(viewport).not_to_have_attribute("transform", zoomed)
    panned_from = viewport.get_attribute("transform")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 200, box["y"] + box["height"] - 90, steps=5)
    page.mouse.up()
    expect(viewport).not_to_have_attribute("transform", panned_from)

    # Following a column reference opens the upstream node's page; a click in the graph opens a node.
    ref.click()
    expect(page.locator('#node-page[data-node-id="model.elt_demo.stg_order_items"]')).to_be_visible()
    page.click("#zoom-fit")
    page.locator('#graph [data-node-id="model.elt_demo.dim_customers"]').click()
    expect(page.locator('#node-page[data-node-id="model.elt_demo.dim_customers"]')).to_be_visible()

    # Searching a column name finds the nodes that have it.
    page.fill("#search", "line_total")
    expect(
        page.locator('.node-list li[data-node-id="model.elt_demo.stg_order_items"] .cols')
    ).to_contain_text("line_total")

    # A source shows its freshness; the coverage page its totals.
    page.goto(Path(generated["path"]).as_uri() + "#/node/source.elt_demo.tap_files.orders")
    expect(page.locator("#freshness")).to_be_visible()
    page.click("#coverage-link")
    expect(page.locator("#coverage-ratio")).to_have_text(f"{100 * generated['coverage']:.1f}%")
    assert errors == []
    page.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_shows_the_site_over_http_without_regenerating_an_up_to_date_one(shop_site, browser) -> None:
    from playwright.sync_api import expect

    project, _ = shop_site
    run_elt("docs", "generate", cwd=project)
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "elt"), "docs", "serve", "--port", str(port)], cwd=project,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(3)]
        assert lines[0].startswith(f"up to date: {project / '.elt' / 'site' / 'index.html'}"), lines
        assert lines[2].strip() == f"serving http://127.0.0.1:{port}/ (Ctrl+C to stop)", lines

        page, errors = open_page(browser, f"http://127.0.0.1:{port}/#/node/model.elt_demo.fct_orders")
        expect(page.locator('#node-page[data-node-id="model.elt_demo.fct_orders"]')).to_be_visible()
        expect(page.locator('#column-lineage tr[data-column="order_total"]')).to_contain_text(
            "stg_order_items.line_total"
        )
        expect(page.locator('#graph [data-node-id="model.elt_demo.fct_orders"]')).to_have_attribute(
            "data-hl", "self"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs_site_served.png"))
        assert errors == []
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_generates_a_missing_site(shop_site) -> None:
    project, _ = shop_site
    out = project / "elsewhere"
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "elt"), "docs", "serve", "--port", str(port), "--out", str(out)], cwd=project,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith(f"wrote {out / 'index.html'}")
        server.stdout.readline()
        assert server.stdout.readline().startswith("serving http://127.0.0.1:")
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data.js", timeout=10) as response:
            assert response.read().startswith(b"window.ELT_LINEAGE = ")
            assert response.headers["Cache-Control"] == "no-cache"
    finally:
        server.terminate()
        server.wait(timeout=10)
