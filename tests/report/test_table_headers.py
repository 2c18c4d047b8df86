"""Every table in the report sections names each column once: two columns under one header (weight bytes and
the weights kind both as "weights") silently dropped one of them from the table."""

import ast
from pathlib import Path

import bench_lib.report.sections as sections


def test_each_table_call_has_distinct_headers():
    tree = ast.parse(Path(sections.__file__).read_text())
    seen = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "table" and len(node.args) >= 3:
            mapping = node.args[2]
            if not isinstance(mapping, ast.Dict):
                continue
            headers = [v.value for v in mapping.values if isinstance(v, ast.Constant)]
            assert len(headers) == len(set(headers)), (node.lineno, sorted(h for h in headers if headers.count(h) > 1))
            seen += 1
    assert seen >= 5
