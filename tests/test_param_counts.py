"""Parameter counts of the released sizes from abstract shapes equal the reference's (per component)."""

import json
import subprocess
import sys

import pytest

from uio2_core.config import get_config
from uio2_core.model import abstract_model, parameter_counts

# reference/uio2-architecture.md section 1.3, in millions (components to 0.1 M, totals to 1 M).
REFERENCE_M = {
    "large": dict(token_embeddings=59.5, encoder=308.3, decoder=409.0, image_history_resampler=11.0,
                  audio_history_resampler=11.0, projections_and_modality_embeddings=5.9, trainable_core=805,
                  image_vit=78.7, audio_ast=78.6, image_vqgan=67.7, audio_vqgan=50.8, total=1081),
    "xl": dict(token_embeddings=119.0, encoder=1157.7, decoder=1560.4, image_history_resampler=25.2,
               audio_history_resampler=25.2, projections_and_modality_embeddings=12.1, trainable_core=2900,
               image_vit=78.7, audio_ast=78.6, image_vqgan=67.7, audio_vqgan=50.8, total=3175),
    "xxl": dict(token_embeddings=178.5, encoder=2718.1, decoder=3624.1, image_history_resampler=25.2,
                audio_history_resampler=25.2, projections_and_modality_embeddings=17.3, trainable_core=6588,
                image_vit=78.7, audio_ast=78.6, image_vqgan=67.7, audio_vqgan=50.8, total=6864),
}  # fmt: skip


@pytest.mark.parametrize("name", ["large", "xl", "xxl"])
def test_component_counts_match_the_reference(name):
    counts = parameter_counts(abstract_model(get_config(name)))
    for component, ref in REFERENCE_M[name].items():
        tolerance = 0.5 if component in ("total", "trainable_core") else 0.05
        assert counts[component] / 1e6 == pytest.approx(ref, abs=tolerance), component


def test_pruned_model_has_no_vqgan_parameters():
    counts = parameter_counts(abstract_model(get_config("large"), with_vqgan=False))
    assert counts["image_vqgan"] == counts["audio_vqgan"] == 0
    assert counts["total"] / 1e6 == pytest.approx(1081 - 67.7 - 50.8, abs=0.5)


def _run_info(model: str) -> tuple[dict, int]:
    # VmHWM is this process's own peak (ru_maxrss would include a forked parent's peak)
    code = (
        "import sys\n"
        "from agent.cli import main\n"
        f"rc = main(['info', '--model', '{model}', '--json'])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(hwm, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(proc.stdout), int(proc.stderr.strip().splitlines()[-1])


def test_info_json_reports_counts_without_allocating_weights():
    info, max_rss_kib = _run_info("large")
    assert info["model"] == "large"
    assert info["params"] == sum(v for k, v in info["components"].items() if k != "trainable_core")
    assert info["params"] / 1e9 == pytest.approx(1.081, abs=0.0005)
    # fp32 weights of `large` are 4.3 GB; building abstract shapes must stay far below that
    assert max_rss_kib < 1_500_000, f"uio2 info used {max_rss_kib / 1e6:.2f} GB"


def test_info_rejects_an_unknown_model():
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "info", "--model", "huge"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "unknown model 'huge'" in proc.stderr
