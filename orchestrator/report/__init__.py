"""``rlm report``: a run as one self-contained HTML page. ``build`` reads the store, ``document`` makes the
page from ``assets/`` (template, stylesheet, script: package data)."""
