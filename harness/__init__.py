"""What the tests and the benchmarks share: a headless desktop, real git repositories, processes, sample data.

Not test code itself (bench/ must not import tests/), and not shipped: only fluxmon/ is packaged.
"""
