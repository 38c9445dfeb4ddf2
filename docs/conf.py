"""Sphinx configuration: Markdown pages (MyST) and an API reference from the docstrings."""

import cryostream

project = "cryostream"
author = "the cryostream developers"
release = version = cryostream.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "figures/*.py", "results/**"]  # raw results, linked from pages
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
myst_heading_anchors = 3
html_theme = "alabaster"
suppress_warnings = ["myst.header"]
