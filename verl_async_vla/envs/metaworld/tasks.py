"""MetaWorld's tasks, suites and language instructions.

MetaWorld (Yu et al. 2019; Farama's v3 release) names its 50 tasks but gives them no language. Each task gets three
plain phrasings here, written for this plugin (RLinf ships one prompt per task; several keep a multi-task policy from
keying on one fixed string). An episode's phrasing is drawn with its layout, so training and evaluation both see all
three. Every phrasing names what to act on and what to do with it, so the tasks of a suite tell apart by language.
"""

from __future__ import annotations

INSTRUCTIONS: dict[str, tuple[str, str, str]] = {
    "assembly-v3": (
        "put the ring on the peg",
        "assemble the ring onto the peg",
        "place the round nut over the peg",
    ),
    "basketball-v3": (
        "put the ball in the hoop",
        "dunk the basketball into the hoop",
        "pick up the ball and drop it through the hoop",
    ),
    "bin-picking-v3": (
        "move the block to the other bin",
        "pick the cube out of the bin and place it in the other bin",
        "transfer the block between the bins",
    ),
    "box-close-v3": ("close the box with its lid", "put the lid on the box", "place the lid onto the box"),
    "button-press-topdown-v3": (
        "press the button from above",
        "push the button down from the top",
        "press down on the button",
    ),
    "button-press-topdown-wall-v3": (
        "press the button from above behind the wall",
        "push the button down from the top, past the wall",
        "reach over the wall and press the button down",
    ),
    "button-press-v3": (
        "press the button from the front",
        "push the button forward",
        "press the button on the front of the box",
    ),
    "button-press-wall-v3": (
        "press the button behind the wall",
        "reach around the wall and push the button",
        "push the button that sits behind the wall",
    ),
    "coffee-button-v3": (
        "press the coffee machine button",
        "push the button on the coffee machine",
        "start the coffee machine with its button",
    ),
    "coffee-pull-v3": (
        "pull the mug away from the coffee machine",
        "slide the cup out from under the coffee machine",
        "pull the coffee mug back",
    ),
    "coffee-push-v3": (
        "push the mug under the coffee machine",
        "slide the cup beneath the coffee machine",
        "push the coffee mug into place under the machine",
    ),
    "dial-turn-v3": ("turn the dial", "rotate the dial", "spin the dial around"),
    "disassemble-v3": (
        "take the ring off the peg",
        "lift the round nut off the peg",
        "disassemble the ring from the peg",
    ),
    "door-close-v3": ("close the door", "push the door shut", "swing the door closed"),
    "door-lock-v3": ("lock the door", "turn the door lock down", "rotate the lock on the door to lock it"),
    "door-open-v3": ("open the door", "pull the door open", "swing the door open by its handle"),
    "door-unlock-v3": (
        "unlock the door",
        "turn the door lock up",
        "rotate the lock on the door to unlock it",
    ),
    "hand-insert-v3": (
        "put your hand in the hole",
        "insert the gripper into the hole",
        "reach down into the hole in the table",
    ),
    "drawer-close-v3": ("close the drawer", "push the drawer shut", "slide the drawer closed"),
    "drawer-open-v3": ("open the drawer", "pull the drawer open", "slide the drawer out by its handle"),
    "faucet-open-v3": ("turn the faucet on", "open the faucet", "rotate the faucet handle to open it"),
    "faucet-close-v3": ("turn the faucet off", "close the faucet", "rotate the faucet handle to close it"),
    "hammer-v3": (
        "hammer the nail in",
        "pick up the hammer and drive in the nail",
        "use the hammer on the nail",
    ),
    "handle-press-side-v3": (
        "press the handle down from the side",
        "push the side handle down",
        "press down on the handle sideways",
    ),
    "handle-press-v3": ("press the handle down", "push the handle down", "press down on the handle"),
    "handle-pull-side-v3": (
        "pull the handle up from the side",
        "lift the side handle up",
        "pull up on the handle sideways",
    ),
    "handle-pull-v3": ("pull the handle up", "lift the handle up", "pull up on the handle"),
    "lever-pull-v3": ("pull the lever up", "raise the lever", "lift the lever"),
    "pick-place-wall-v3": (
        "pick up the puck and place it behind the wall",
        "move the puck over the wall to the goal",
        "lift the puck past the wall and put it down at the target",
    ),
    "pick-out-of-hole-v3": (
        "pick the peg out of the hole",
        "lift the peg out of the hole",
        "pull the peg up out of the hole",
    ),
    "pick-place-v3": (
        "pick up the puck and place it at the goal",
        "move the puck to the target",
        "lift the puck and put it down at the goal",
    ),
    "plate-slide-v3": (
        "slide the plate into the goal",
        "push the plate forward into the net",
        "slide the plate into the cabinet",
    ),
    "plate-slide-side-v3": (
        "slide the plate sideways into the goal",
        "push the plate to the side into the net",
        "slide the plate sideways into the cabinet",
    ),
    "plate-slide-back-v3": (
        "slide the plate back out of the goal",
        "pull the plate back out of the net",
        "slide the plate back out of the cabinet",
    ),
    "plate-slide-back-side-v3": (
        "slide the plate back out sideways",
        "pull the plate out of the net to the side",
        "slide the plate sideways out of the cabinet",
    ),
    "peg-insert-side-v3": (
        "insert the peg into the hole from the side",
        "push the peg sideways into the hole",
        "put the peg in the side hole",
    ),
    "peg-unplug-side-v3": (
        "unplug the peg from the side",
        "pull the peg sideways out of the hole",
        "remove the peg from the side hole",
    ),
    "soccer-v3": (
        "kick the ball into the goal",
        "push the soccer ball into the net",
        "score a goal with the ball",
    ),
    "stick-push-v3": (
        "push the bottle with the stick",
        "use the stick to push the bottle",
        "grab the stick and push the bottle along",
    ),
    "stick-pull-v3": (
        "pull the bottle with the stick",
        "use the stick to pull the bottle",
        "grab the stick and pull the bottle back",
    ),
    "push-v3": (
        "push the puck to the goal",
        "slide the puck to the target",
        "push the puck across the table to the goal",
    ),
    "push-wall-v3": (
        "push the puck around the wall to the goal",
        "slide the puck past the wall to the target",
        "push the puck to the goal behind the wall",
    ),
    "push-back-v3": (
        "push the puck back to the goal",
        "slide the puck backwards to the target",
        "pull the puck back to the goal",
    ),
    "reach-v3": ("reach the goal", "move the gripper to the target", "put the hand at the goal position"),
    "reach-wall-v3": (
        "reach the goal behind the wall",
        "move the gripper over the wall to the target",
        "reach past the wall to the goal",
    ),
    "shelf-place-v3": (
        "put the block on the shelf",
        "place the cube onto the shelf",
        "pick up the block and set it on the shelf",
    ),
    "sweep-into-v3": (
        "sweep the puck into the hole",
        "push the puck into the hole in the table",
        "slide the puck into the hole",
    ),
    "sweep-v3": (
        "sweep the puck off the table",
        "push the puck off the edge of the table",
        "slide the puck off the side of the table",
    ),
    "window-open-v3": ("open the window", "slide the window open", "push the window open sideways"),
    "window-close-v3": ("close the window", "slide the window shut", "push the window closed sideways"),
}

# MetaWorld's MT10 (Yu et al. 2019, sec. 4.3), in MetaWorld's order; MT50 is every task
MT10 = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
)  # fmt: skip
SUITES: dict[str, tuple[str, ...]] = {"mt10": MT10, "mt50": tuple(INSTRUCTIONS)}


def suite_tasks(suite: str) -> tuple[str, ...]:
    """`env.metaworld.suite`: mt10 | mt50 | one task's name (e.g. reach-v3) -> the task names it covers."""
    if suite in SUITES:
        return SUITES[suite]
    if suite in INSTRUCTIONS:
        return (suite,)
    raise ValueError(
        f"env.metaworld.suite={suite!r} is unknown; use one of {sorted(SUITES)} or a task name such as "
        f"'reach-v3' (all 50: {', '.join(sorted(INSTRUCTIONS))})."
    )


def split_variations(n: int, held_out: int) -> tuple[list[int], list[int]]:
    """A task's parametric variations (object and goal positions, MetaWorld's `train_tasks`) -> (training indices,
    held-out indices): the last `held_out` are for evaluation only."""
    if not 0 < held_out < n:
        raise ValueError(
            f"env.metaworld.eval_variations={held_out} must be in [1, {n - 1}]: each task has {n} variations, "
            "some for training and at least one held out."
        )
    return list(range(n - held_out)), list(range(n - held_out, n))
