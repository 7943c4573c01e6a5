"""The ``lensbox`` command through ``lensbox.cli.main``: help, shared flags, checks before the model loads.

Most tests here never load a model: ``_common.load_model`` is replaced by a function that
fails the test, so a check that ran too late shows up as a failure.
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import pytest

from lensbox.cli import _common, build_parser, main, verb_parsers

VERBS = ("lens", "analyzers", "train-lens", "eval-lens", "train-probe", "eval-probe", "attribute")


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if any verb gets as far as loading a model."""

    def refuse(args):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(_common, "load_model", refuse)


def _verb_parsers():
    return build_parser(), verb_parsers()


@pytest.mark.smollm2
def test_lens_table_and_outputs(tmp_path, capsys):
    csv = tmp_path / "lens.csv"
    code = main(["-q", "lens", "The capital of France is", "--sites", "embed,25-29", "--out", str(csv)])
    out = capsys.readouterr().out
    assert code == 0
    assert "resid_post.29" in out and "Paris" in out
    import pandas as pd

    df = pd.read_csv(csv)
    assert set(df.site) == {"embed", "resid_post.25", "resid_post.26", "resid_post.27", "resid_post.28", "resid_post.29"}
    last = df[(df.site == "resid_post.29")].sort_values("pos").iloc[-1]
    assert last.top1_token.strip("␣") == "Paris"


@pytest.mark.smollm2
def test_lens_bad_layer_is_clear(capsys):
    code = main(["-q", "lens", "hello", "--sites", "99"])
    err = capsys.readouterr().err
    assert code == 2 and "Layer 99 does not exist" in err and "fix:" in err


def test_unknown_output_format(tmp_path):
    from lensbox import LensboxError
    from lensbox.cli import write_result

    with pytest.raises(LensboxError, match="Unknown output format"):
        write_result(object(), tmp_path / "x.docx")


# ---------------------------------------------------------------- help


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:  # the program name holds "lens"; the verb list is only in the help
        assert f"    {verb} " in out or f"    {verb}\n" in out, verb
    assert "Run `lensbox VERB --help`" in out


@pytest.mark.parametrize("verb", VERBS)
def test_every_option_shows_a_default_and_help(verb):
    _, verbs = _verb_parsers()
    p = verbs[verb]
    formatter = p._get_formatter()
    for action in p._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        text = formatter._get_help_string(action)
        assert text and len(text) > 12, (verb, action.option_strings)
        assert "default" in text or (action.required and "required" in text), (verb, action.option_strings, text)


def test_train_lens_help_states_the_objective_and_the_regularisation():
    _, verbs = _verb_parsers()
    text = " ".join(verbs["train-lens"].format_help().split())
    assert "mean KL(final || lens) over positions and sites" in text
    assert "'auto' chooses it per site" in text and "default mix" in text


def test_old_spellings_are_hidden_but_work(capsys):
    parser, verbs = _verb_parsers()
    for verb, old in [("lens", "--layers"), ("train-lens", "--token-budget"), ("train-lens", "--tokens"),
                      ("eval-lens", "--tokens"), ("train-probe", "--tokens"), ("train-probe", "--text"),
                      ("eval-probe", "--csv"), ("eval-probe", "--plot")]:
        assert old not in verbs[verb].format_help(), (verb, old)
    args = parser.parse_args(["lens", "hi", "--layers", "embed,3"])
    assert args.sites == "embed,3"
    args = parser.parse_args(["train-lens", "a.txt", "--token-budget", "12800", "--out", "x"])
    assert args.max_tokens == 12800
    args = _common.merge_aliases(
        parser.parse_args(["train-probe", "--text", "a.txt", "--text", "b.txt", "--tokens", "640", "--out", "p"]))
    assert args.files == ["a.txt", "b.txt"] and args.max_tokens == 640
    args = parser.parse_args(["eval-probe", "p", "--csv", "a.csv", "--plot", "a.png", "--out", "b.json"])
    assert sorted(args.out) == ["a.csv", "a.png", "b.json"]
    err = capsys.readouterr().err
    assert "--token-budget is now spelled --max-tokens" in err and "--layers is now spelled --sites" in err


def test_same_flag_names_in_every_verb():
    _, verbs = _verb_parsers()
    flags = {verb: {s for a in p._actions for s in a.option_strings if a.help != argparse.SUPPRESS}
             for verb, p in verbs.items()}
    for verb in ("lens", "train-lens", "eval-lens", "train-probe", "eval-probe"):
        assert {"--model", "--dtype", "--device", "--device-map", "--sites", "-q", "--quiet"} <= flags[verb], verb
    for verb in ("train-lens", "eval-lens", "train-probe", "eval-probe"):
        assert {"--window", "--max-tokens", "--batch-size", "--corpus", "--out"} <= flags[verb], verb


def test_defaults_come_from_the_library():
    from lensbox.lenses import evaluate
    from lensbox.training import TrainSettings

    parser, _ = _verb_parsers()
    train = parser.parse_args(["train-lens", "a.txt", "--out", "x"])
    lib = _common.library_defaults(TrainSettings)
    assert lib["sites_per_token"] == 4 and lib["batch_size"] == 1  # the measured fast path
    for name in ("window", "batch_size", "val_fraction", "ridge", "init", "sites_per_token", "optimizer"):
        assert getattr(train, name) == lib[name], name
    ev = parser.parse_args(["eval-lens", "a.txt"])
    assert (ev.window, ev.batch_size) == (_common.library_defaults(evaluate)["window"],
                                          _common.library_defaults(evaluate)["batch_size"])


# ---------------------------------------------------------------- -q before and after the verb


@pytest.mark.parametrize(
    "argv, quiet",
    [(["lens", "hi"], False), (["-q", "lens", "hi"], True), (["lens", "hi", "-q"], True),
     (["lens", "-q", "hi"], True), (["--quiet", "train-lens", "a", "--out", "x"], True),
     (["train-lens", "a", "--out", "x", "--quiet"], True), (["eval-probe", "p", "-q"], True)],
)
def test_quiet_before_and_after_the_verb(argv, quiet):
    assert build_parser().parse_args(argv).quiet is quiet


def test_quiet_after_the_verb_through_main(capsys):
    assert main(["analyzers", "-q"]) == 0
    assert "logit_lens" in capsys.readouterr().out


# ---------------------------------------------------------------- numbers refused while parsing


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train-lens", "a.txt", "--out", "x", "--lr", "nan"], "argument --lr: expected a finite number > 0, received 'nan'"),
        (["train-lens", "a.txt", "--out", "x", "--lr=-1e-3"], "argument --lr: expected a finite number > 0"),
        (["train-lens", "a.txt", "--out", "x", "--max-tokens", "0"], "argument --max-tokens: expected a whole number >= 1"),
        (["train-lens", "a.txt", "--out", "x", "--token-budget", "-5"], "expected a whole number >= 1, received '-5'"),
        (["train-lens", "a.txt", "--out", "x", "--val-fraction", "1.5"], "argument --val-fraction: expected a number from 0"),
        (["train-lens", "a.txt", "--out", "x", "--ridge", "inf"], "argument --ridge: expected a finite number >= 0"),
        (["train-lens", "a.txt", "--out", "x", "--shrink", "1.5"], "argument --shrink: expected a number from 0 to 1"),
        (["train-lens", "a.txt", "--out", "x", "--translator", "full"], "argument --translator: invalid choice"),
        (["lens", "hi", "--max-positions", "0", "--out", "x.png"], "argument --max-positions: expected a whole number >= 1"),
        (["lens", "hi", "--k", "2.5"], "argument --k: expected a whole number >= 1, received '2.5'"),
        (["eval-lens", "a.txt", "--window", "0"], "argument --window: expected a whole number >= 1"),
        (["train-probe", "--out", "p", "--tokens", "0"], "expected a whole number >= 1, received '0'"),
        (["train-probe", "--out", "p", "--lr=-inf"], "argument --lr: expected a finite number > 0"),
    ],
)
def test_bad_numbers_fail_while_parsing(argv, message, no_model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- files checked before the model loads


def test_missing_input_file_before_the_model(tmp_path, no_model, capsys):
    assert main(["-q", "train-lens", str(tmp_path / "emma.txtt"), "--out", str(tmp_path / "lens")]) == 2
    err = capsys.readouterr().err
    assert "emma.txtt" in err and "does not exist" in err
    assert main(["-q", "eval-lens", str(tmp_path / "nope.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["-q", "train-probe", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "p")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_corpus_before_the_model(tmp_path, no_model, capsys):
    assert main(["-q", "train-lens", "--corpus", "botchn", "--out", str(tmp_path / "lens")]) == 2
    err = capsys.readouterr().err
    assert "Unknown corpus 'botchn'" in err and "botchan" in err


def test_no_text_trains_on_the_default_mix_fetched_before_the_model(tmp_path, no_model, capsys, monkeypatch):
    import lensbox.data

    fetched = []
    monkeypatch.setattr(lensbox.data, "default_training_texts",
                        lambda progress=True: fetched.append(1) or (["some text"], {"name": "lensbox default mix"}))
    with pytest.raises(AssertionError, match="the model was loaded"):
        main(["train-lens", "--out", str(tmp_path / "x")])
    assert fetched == [1]  # before the model
    assert "training on lensbox's default mix of domains and languages" in capsys.readouterr().err


def test_regularisation_flags_reach_the_settings(tmp_path, no_model, capsys):
    from lensbox.cli._tuned import _settings

    parser = build_parser()
    args = parser.parse_args(["train-lens", "a.txt", "--out", "x", "--ridge", "auto", "--shrink", "0.5",
                              "--translator", "lowrank", "--rank", "8", "--select-tokens", "256"])
    s = _settings(args, {})
    assert (s.ridge, s.shrink, s.translator, s.rank, s.select_tokens, s.val_data) == ("auto", 0.5, "lowrank", 8, 256, None)
    assert parser.parse_args(["train-lens", "--out", "x", "--ridge", "0.01"]).ridge == 0.01
    text = tmp_path / "a.txt"
    text.write_text("hello", encoding="utf-8")
    assert main(["-q", "train-lens", str(text), "--out", str(tmp_path / "l"), "--val-text", str(tmp_path / "nope")]) == 2
    assert "--val-text input" in capsys.readouterr().err
    assert main(["-q", "train-lens", str(text), "--out", str(tmp_path / "l"), "--val-corpus", "nope"]) == 2
    assert "Unknown corpus 'nope'" in capsys.readouterr().err


def test_no_text_message_names_the_verb(tmp_path, no_model, capsys):
    lens = tmp_path / "lens"
    lens.mkdir()
    assert main(["-q", "eval-lens", "--lens", str(lens)]) == 2
    err = capsys.readouterr().err
    assert "No held-out text was given" in err and "lensbox eval-lens" in err and "train-lens" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["lens", "hi", "--out", "{tmp}/missing/x.csv"],
        ["eval-lens", "{text}", "--out", "{tmp}/missing/ev.csv"],
        ["train-lens", "{text}", "--out", "{tmp}/missing/lens"],
        ["train-probe", "{text}", "--out", "{tmp}/missing/probe"],
    ],
)
def test_out_in_a_missing_folder_before_the_model(argv, tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    argv = [a.format(tmp=tmp_path, text=text) for a in argv]
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err
    assert "The folder of --out does not exist" in err and "mkdir -p" in err
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "argv",
    [["lens", "hi", "--out", "{tmp}/x.docx"], ["eval-lens", "{text}", "--out", "{tmp}/ev.xlsx"],
     ["eval-probe", "{tmp}", "--out", "{tmp}/acc.txt"]],
)
def test_unknown_out_extension_before_the_model(argv, tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    argv = [a.format(tmp=tmp_path, text=text) for a in argv]
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err
    assert "Unknown output format for --out" in err and ".csv" in err


@pytest.mark.parametrize("verb", ["train-lens", "train-probe"])
def test_existing_artifact_folder_refused_before_the_model(verb, tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine", encoding="utf-8")
    for extra in ([], ["--overwrite"]):  # a folder of the user's files is never replaced
        assert main(["-q", verb, str(text), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert "holds files that are not a saved" in err and "never deletes" in err
    assert (out / "thesis.tex").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("verb, meta, fmt", [("train-lens", "config.json", "lensbox.tuned_lens"),
                                             ("train-probe", "probe.json", "lensbox.input_probe")])
def test_existing_artifact_needs_overwrite(verb, meta, fmt, tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / meta).write_text(json.dumps({"format": fmt, "format_version": 2}), encoding="utf-8")
    assert main(["-q", verb, str(text), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "pass --overwrite" in err
    with pytest.raises(AssertionError, match="the model was loaded"):  # --overwrite gets past the check
        main(["-q", verb, str(text), "--out", str(out), "--overwrite"])


def test_missing_lens_folder_before_the_model(tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    assert main(["-q", "eval-lens", str(text), "--lens", str(tmp_path / "my-lenz")]) == 2
    err = capsys.readouterr().err
    assert "my-lenz" in err and "does not exist" in err


def test_resume_needs_an_existing_checkpoint_dir(tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    base = ["-q", "train-lens", str(text), "--out", str(tmp_path / "lens"), "--resume"]
    assert main(base) == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
    assert main(base + ["--checkpoint-dir", str(tmp_path / "ckpt-typo")]) == 2
    assert "checkpoint folder to resume from does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # a folder with no checkpoint in it: fail, never start afresh
    assert main(base + ["--checkpoint-dir", str(tmp_path / "empty")]) == 2
    assert "Nothing to resume: the checkpoint folder holds no checkpoint" in capsys.readouterr().err


def test_steps_and_max_tokens_together_refused(tmp_path, no_model, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    assert main(["-q", "train-lens", str(text), "--out", str(tmp_path / "l"), "--steps", "3", "--max-tokens", "99"]) == 2
    assert "--steps and --max-tokens were both given" in capsys.readouterr().err


def test_cuda_without_cuda_before_the_model(tmp_path, no_model, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["-q", "lens", "hi", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


# ---------------------------------------------------------------- metric choices from the metric table


def test_metric_choices_come_from_the_metric_table(capsys):
    from lensbox.lenses import get_metric, metric_names

    parser, verbs = _verb_parsers()
    for name in metric_names("result"):  # every metric of the table is accepted, including kl_input_reverse
        assert parser.parse_args(["lens", "hi", "--metric", name]).metric == name
    alias = next(a for m in metric_names("result") for a in get_metric(m).aliases)
    assert parser.parse_args(["lens", "hi", "--metric", alias]).metric == get_metric(alias).name
    for name in metric_names("evaluation"):
        assert parser.parse_args(["eval-lens", "a", "--metric", name]).metric == name
    assert ", ".join(metric_names("result")) in " ".join(verbs["lens"].format_help().split())
    with pytest.raises(SystemExit):
        parser.parse_args(["lens", "hi", "--metric", "bogus"])
    assert "expected one of top1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a per-cell metric is not an evaluation metric
        parser.parse_args(["eval-lens", "a", "--metric", "entropy"])


# ---------------------------------------------------------------- Ctrl-C


def test_interrupt_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_common, "load_model", interrupted)
    assert main(["lens", "hi"]) == 130
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "interrupted" in captured.err
    assert captured.out == ""


class _SlowFrame:
    """A stand-in for a DataFrame whose to_csv writes half a file, then is interrupted."""

    def to_csv(self, path, index=False):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("site,pos\n" + "embed,0\n" * 1000)
            fh.flush()
            raise KeyboardInterrupt


class _FakeResult:
    def to_pandas(self):
        return _SlowFrame()


def test_interrupted_write_leaves_no_file(tmp_path):
    from lensbox.cli import write_result

    with pytest.raises(KeyboardInterrupt):
        write_result(_FakeResult(), tmp_path / "big.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigint_in_a_real_process_leaves_no_partial_csv(tmp_path):
    """A real SIGINT while `lensbox lens --out big.csv` writes: one line on stderr, status 130, no file."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        # A process started in the background by a non-interactive shell inherits SIGINT ignored;
        # a user's terminal delivers it to Python's default handler, as restored here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import lensbox.lenses
        from lensbox.cli import _common, main

        class Frame:
            def to_csv(self, path, index=False):
                with open(path, "w") as fh:
                    fh.write("site,pos\\n" + "embed,0\\n" * 10000)
                    fh.flush()
                    os.kill(os.getpid(), signal.SIGINT)
                    fh.write("never\\n")

        class Result:
            def table(self, **kw):
                return "table"
            def to_pandas(self):
                return Frame()

        _common.load_model = lambda args: None
        def logit_lens(model, inputs, *, sites=None, include_mid=False, k=5, decoder=None, chunk_rows=512):
            return Result()

        lensbox.lenses.logit_lens = logit_lens
        sys.exit(main(sys.argv[1:]))
        """
    )
    out = tmp_path / "big.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script, "-q", "lens", "hi", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["lensbox: interrupted (no partial output was written)"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- eval-lens and a lens's training text


def test_eval_lens_refuses_the_training_text_before_the_model(tmp_path, no_model, capsys):
    text, other = tmp_path / "train.txt", tmp_path / "other.txt"
    text.write_text("hello", encoding="utf-8")
    other.write_text("bonjour", encoding="utf-8")
    lens = tmp_path / "lens"
    lens.mkdir()
    config = {"format": "lensbox.tuned_lens", "format_version": 2, "corpus": {"files": [str(text.resolve())]},
              "training": {"window": 16, "val_fraction": 0.1, "seed": 0}}
    (lens / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert main(["-q", "eval-lens", str(text), "--lens", str(lens)]) == 2
    err = capsys.readouterr().err
    assert "the text lens 'lens' was trained on" in err and "--held-out" in err
    assert main(["-q", "eval-lens", str(other), "--lens", str(lens), "--held-out"]) == 2
    assert "--held-out needs a lens trained on this text" in capsys.readouterr().err
    (lens / "config.json").write_text(json.dumps({**config, "corpus": {"name": "botchan", "files": 1}}), "utf-8")
    assert main(["-q", "eval-lens", "--corpus", "botchan", "--lens", str(lens)]) == 2
    assert "was trained on" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="the model was loaded"):  # other text goes ahead
        main(["-q", "eval-lens", str(other), "--lens", str(lens)])
