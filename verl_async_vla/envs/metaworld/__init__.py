"""MetaWorld backend (`pip install 'verl-async-vla[metaworld]'`): the 50 Sawyer tasks with language instructions."""
