"""Grounding a prompt's objects (policies/grounding.py): labels against the simulator's own objects,
positions in the action's own tokens, and training's questions and prompts equal to the policy's."""

import jax.numpy as jnp
import numpy as np
import pytest

from agent.cli import main
from envs.tabletop import make_tabletop
from policies import grounding
from policies.base import TaskSpec
from policies.codecs import VimaActionCodec, quaternion_from_yaw
from training.data import GROUNDING_SHARE, ExampleBuilder, TrainingData
from training.dataset import open_dataset
from uio2_core.vocab import is_location_token, tiny_vocabulary


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two visual_manipulation oracle episodes (seeds 7, 8), recorded as `uio2 collect` records them."""
    out = tmp_path_factory.mktemp("data") / "vm"
    argv = ["collect", "--env", "tabletop/visual_manipulation", "--policy", "oracle", "--episodes", "2"]
    assert main([*argv, "--seed", "7", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("task", ["visual_manipulation", "rotate"])
def test_labels_are_the_tasks_own_objects(task):
    """The asset's obj_info matched to the scene's obj_id_to_info finds exactly the bodies the task
    made its dragged object and base (pybullet's truth, not the oracle's action)."""
    env = make_tabletop(task)
    try:
        for seed in range(3):
            obs, info = env.reset(seed=seed)
            objects = grounding.prompt_objects(info["prompt"], info["prompt_assets"], "top", crop=True)
            scene = grounding.top_view_objects(obs, info["meta_info"]["robot_components"])
            ids = grounding.scene_identities(info["meta_info"])
            found = {o.name: [scene[i].body_id for i in grounding.matches(o, scene, ids)] for o in objects}
            t = env.unwrapped.task
            want = {"dragged_obj_1": [t.dragged], "base_obj": [t.base]} if task == "visual_manipulation" \
                else {"dragged_obj": [t.target]}  # fmt: skip
            assert found == want, (seed, found)
            assert len(scene) >= len(want) + 1  # distractors too: the questions have "no" answers
    finally:
        env.close()


def test_located_prompt_writes_the_actions_own_location_tokens():
    vocab = tiny_vocabulary()
    codec = VimaActionCodec(vocab)
    q = quaternion_from_yaw(0.0)
    pick, place = (0.41, -0.27), (0.66, 0.31)
    action = {"pose0_position": np.array(pick, np.float32), "pose0_rotation": q,
              "pose1_position": np.array(place, np.float32), "pose1_rotation": q}  # fmt: skip
    ids = codec.encode(action)
    action_locations = [t for t in ids if is_location_token(t)]
    text = grounding.located_prompt("Put the {a} into the {b} and not {c}.", {"a": pick, "b": place})
    assert text.endswith("and not {c}.")  # a placeholder with no position is left for the prompt images
    prompt_locations = [t for t in vocab.encode(text) if is_location_token(t)]
    # the pick's x y and the place's x y (the action adds a rotation after each)
    assert prompt_locations == action_locations[0:2] + action_locations[3:5]


def test_choose_gives_each_prompt_object_its_own_scene_object():
    assert grounding.choose(np.array([[0.1, 5.0, 0.2], [0.3, 4.0, 1.0]])) == [1, 2]
    assert grounding.choose(np.array([[2.0, 1.0]])) == [0]
    assert grounding.choose(np.array([[1.0], [2.0]])) == [0, 0]  # fewer objects than names: reuse


def test_segmentation_is_recorded(recorded):
    env = make_tabletop("visual_manipulation")
    try:
        obs, _ = env.reset(seed=8)
    finally:
        env.close()
    ep = open_dataset(recorded).episode(1)
    for view in ("top", "front"):
        np.testing.assert_array_equal(ep[f"observation.segm.{view}"][0][..., 0], obs["segm"][view])


def test_training_questions_and_prompts_are_the_policys(recorded, tiny_model):
    """Training's grounded examples against the policy on the same seed's first step:
    - the questions: half yes, a yes pairs the prompt image with the task's own object's crop, and the
      model's answer margin on the indexed example is what the policy computes for the same question;
    - the action step: the prompt written with the true objects' positions is the one the policy writes
      when its grounding picks those objects, token for token, and no prompt image is left."""
    from policies.uio2_policy import UIO2Policy
    from training.trainer import split_batch

    cfg, vocab = tiny_model.cfg, tiny_vocabulary()
    builder = ExampleBuilder(cfg, vocab, view="top", prompt_crop=True, ground_objects=True)
    data = TrainingData([str(recorded)], builder, batch_size=2)
    assert data.paths[1] == f"{recorded}#grounding"
    np.testing.assert_allclose(data.weights, [1 - GROUNDING_SHARE, GROUNDING_SHARE])
    questions = data.indexed[1]
    first = [i for i, (e, _) in enumerate(questions.steps) if e == 0]
    yes_id, no_id = (vocab.encode(grounding.ANSWERS[s])[0] for s in (True, False))
    answers = questions.targets[first, 0]
    assert (answers == yes_id).sum() == (answers == no_id).sum() > 0

    env = make_tabletop("visual_manipulation")
    obs, info = env.reset(seed=7)
    task = env.unwrapped.task
    env_task = TaskSpec.from_env(env, info, seed=7)
    env.close()
    scene = grounding.top_view_objects(obs)
    crops = {o.body_id: o.crop for o in scene}
    for i in first:  # every yes shows the prompt object's own body
        record = questions.records[i]
        if questions.targets[i, 0] == yes_id:
            assert any(record.history[1] is c or np.array_equal(record.history[1], c)
                       for b, c in crops.items() if b in (task.dragged, task.base))  # fmt: skip

    policy = UIO2Policy(tiny_model, vocab, text_len=128, max_frames=4, view="top", prompt_crop=True,
                        ground_objects=True)  # fmt: skip
    policy.reset(env_task)
    row = policy.rows[0]
    g = row.grounded
    asked = [grounding.question(o.image, s.crop) for o in g.objects for s in scene]
    margins = policy._answer_margins(asked)
    assert policy.questions_asked == len(g.objects) * len(scene)
    # the indexed question whose crop is scene object j against prompt object 0: same margin
    for i in first:
        record = questions.records[i]
        j = next(j for j, s in enumerate(scene) if np.array_equal(s.crop, record.history[1]))
        p = next(p for p, o in enumerate(g.objects) if np.array_equal(o.image, record.history[0]))
        arrays, targets = data.example(1, i)
        batch = {k: jnp.asarray(v[None]) for k, v in arrays.items()} | {"targets/text": targets[None]}
        inputs, tgt, masks, _ = split_batch(batch)
        logits = tiny_model.decode(tiny_model.encode_sequence(tiny_model.embed_inputs(inputs)), tgt, masks)
        want = float(logits["text"][0, 0, yes_id] - logits["text"][0, 0, no_id])
        assert margins[p * len(scene) + j] == pytest.approx(want, abs=1e-4)

    # the policy's grounding made to pick the task's own objects: its prompt is training's
    true = np.array([[1.0 if s.body_id == b else 0.0 for s in scene] for b in (task.dragged, task.base)])
    policy._answer_margins = lambda qs: true.reshape(-1)
    (chosen,) = policy._ground([obs])  # what act does first
    trained_text = data.indexed[0].tokens[data.steps[0].index((0, 0))]
    np.testing.assert_array_equal(policy.builder.text_ids([policy._example(row, obs)])[0], trained_text)
    assert len(row.history.prompt_images) == 0  # the objects are named by position, not shown
    by_body = {s.body_id: (s.x, s.y) for s in scene}
    assert chosen == {"dragged_obj_1": list(by_body[task.dragged]), "base_obj": list(by_body[task.base])}
