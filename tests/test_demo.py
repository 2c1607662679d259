from ntjax.demo import run_demo


def test_demo_reports_and_writes_a_plot(tmp_path):
    report = run_demo(output_dir=str(tmp_path), max_steps=20, progress=False)
    assert "seasonal naive" in report and "NHITS" in report
    assert "next 24 h" in report
    assert (tmp_path / "ntjax-demo-forecast.png").stat().st_size > 10_000
