"""The lineage docs site: a static folder showing the project's lineage graph, nodes, columns and runs.

`generate_site` writes it from a `LineageGraph`; `build_site` loads the project's lineage first (what
`elt docs generate` does); `serve_site` serves the folder over HTTP (`elt docs serve`). docs/docs-site.md
says what the site shows.
"""

from __future__ import annotations

from elt.docs_site.serve import serve_site
from elt.docs_site.site import SiteResult, build_site, default_site_dir, generate_site, site_data

__all__ = ["SiteResult", "build_site", "default_site_dir", "generate_site", "serve_site", "site_data"]
