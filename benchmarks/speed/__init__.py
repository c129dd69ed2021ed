"""Timing and memory benchmarks (docs/speed.md, docs/stage1.md, docs/results.md)."""
