"""Benchmarks and the world they run in (a package so that tests can import bench.world)."""
