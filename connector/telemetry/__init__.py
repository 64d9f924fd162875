"""Prometheus metrics: counted by the FreshBooks client and each pipeline stage; queue gauges read storage."""
