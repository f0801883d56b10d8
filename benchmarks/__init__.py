"""eagerctl's benchmarks: `python -m benchmarks [--quick] [--json FILE] [--plot FILE.png]`."""
