"""``effbench report``: run files -> a report people act on (HTML page, Markdown, PNG figures, tidy CSV).

Stages, each DataFrame in, DataFrame out:
``load`` (files, schema upgrade, validation) -> ``tidy`` (one row per run x case, every outcome) ->
``aggregate`` / ``views`` / ``claims`` (medians, ratios, exponents, fractions of peak, the tutorial's
claims) -> ``render_*`` (figures) and ``sections`` (the document) -> ``html`` / ``markdown``.
``cli.render(paths, outdir)`` runs the whole pipeline.
"""
