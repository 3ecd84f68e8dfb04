"""`bench calibrate`'s verdict from measured points (pure)."""

from bench.commands.calibrate import CeilingPoint, safe_range


def _p(kind, value, achieved, warnings=(), chunks=None):
    return CeilingPoint(kind, value, achieved, chunks, 1.0, 50.0, 1.0, list(warnings))


def test_safe_range_stops_at_the_first_client_bound_rate():
    points = [_p("streams", 64, 1400, chunks=90_000.0), _p("streams", 256, 1300, ["client_cpu"], 80_000.0),
              _p("rate", 100, 100), _p("rate", 300, 299), _p("rate", 1000, 1000, ["client_loop_lag"]),
              _p("rate", 3000, 2000)]
    safe = safe_range(points)
    assert safe["rate"] == 300
    assert safe["ceiling_chunks_per_s"] == 90_000.0 and safe["safe_chunks_per_s"] == 45_000.0
    assert safe["ceiling_requests_per_s"] == 1400


def test_a_rate_not_reached_is_not_safe():
    assert safe_range([_p("rate", 100, 90)])["rate"] is None


def test_each_point_s_line_gives_its_verdict():
    from bench.commands.calibrate import point_line

    assert point_line(_p("streams", 64, 1400, chunks=90_000.0)).endswith("(ceiling)")
    assert point_line(_p("rate", 300, 299)).endswith("  ok")
    assert point_line(_p("rate", 1000, 1000, ["client_loop_lag", "client_cpu"])).endswith(
        "CLIENT-BOUND: client_loop_lag,client_cpu")
    line = point_line(_p("rate", 3000, 2000))
    assert line.startswith("  3000 req/s Poisson: 2,000 req/s, - chunks/s") and line.endswith("CLIENT-BOUND: rate not reached")
