"""The model card of a publish folder (reports.model_card): what it says when the experiment left
no metrics, no training command and no config."""
from asteroid_frugal.config import load_config
from asteroid_frugal.reports.model_card import dataset_description, model_card


def test_card_of_a_model_without_metrics_command_or_experiment_config():
    conf = load_config()
    info = dict(conf=conf, conf_from_experiment=False, metrics=None, command=None, bss_backend=None)
    card = model_card("FrugalTasNet_builtin_drums", "drums", info, {"n_channels": 1, "sample_rate": 8000}, 1234,
                      "mit", {"torch": "2.x"})
    assert "Its two outputs are **drums** and **no_drums** (mono, 8000 Hz, 1,234 parameters)." in card
    assert "# unknown: the experiment has no train_command.txt" in card and "**Not evaluated yet**" in card
    assert "Training configuration (the experiment has no conf.yml: this is the publishing config):" in card
    assert "- torch: 2.x" in card and card.endswith("Model weights: `mit`. Trained on data with its own terms.\n")
    assert dataset_description(conf)["ids"] == [] and "not MUSDB18" in dataset_description(conf)["text"]
