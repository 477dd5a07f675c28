"""Where samples are trained on: the actor-side episode intake, the staleness rule and the trainer loop."""
