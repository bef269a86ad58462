"""Write xmr's default bridge caption corpus (retrieval/data/captions.txt), deterministically.

Sound sources and their sounds are drawn from everyday label vocabularies (the kind of names
the AudioSet ontology uses: animals, people, vehicles, household, nature, music, tools),
combined with scenes and sentence templates. Evaluation prompts are kept out on purpose: no
line has the form "the sound of a <label>" (ESC-50 zero-shot) and no AudioCaps/Clotho test
caption was used.

    python -m scripts.make_captions [--out PATH] [--count N]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# (source, things it does that make sound)
SOURCES: list[tuple[str, list[str]]] = [
    # animals
    ("a dog", ["barks", "growls", "whimpers", "howls", "pants", "yelps"]),
    ("a puppy", ["yips", "whines", "barks excitedly"]),
    ("a cat", ["meows", "purrs", "hisses", "yowls"]),
    ("a kitten", ["mews softly", "purrs"]),
    ("a rooster", ["crows", "crows at dawn"]),
    ("a hen", ["clucks", "cackles"]),
    ("chickens", ["cluck and scratch", "cackle in a coop"]),
    ("a cow", ["moos", "lows"]),
    ("cattle", ["moo in a field", "shuffle and low"]),
    ("a pig", ["oinks", "grunts", "squeals"]),
    ("a sheep", ["bleats"]),
    ("a goat", ["bleats loudly"]),
    ("a horse", ["neighs", "whinnies", "snorts", "gallops"]),
    ("a donkey", ["brays"]),
    ("a duck", ["quacks"]),
    ("geese", ["honk", "honk overhead"]),
    ("a frog", ["croaks", "ribbits"]),
    ("frogs", ["croak in a pond", "chorus at night"]),
    ("crickets", ["chirp", "chirp at night"]),
    ("cicadas", ["buzz in the heat", "drone in the trees"]),
    ("insects", ["buzz", "hum and whine"]),
    ("a bee", ["buzzes"]),
    ("a mosquito", ["whines near the ear"]),
    ("a fly", ["buzzes against a window"]),
    ("birds", ["sing", "chirp", "tweet", "twitter in the trees"]),
    ("a songbird", ["sings a melody", "warbles"]),
    ("a crow", ["caws"]),
    ("crows", ["caw loudly"]),
    ("seagulls", ["cry", "squawk over the water"]),
    ("an owl", ["hoots"]),
    ("a pigeon", ["coos"]),
    ("a woodpecker", ["drums on a tree"]),
    ("a parrot", ["squawks", "mimics a voice"]),
    ("a lion", ["roars"]),
    ("a wolf", ["howls"]),
    ("a monkey", ["screeches", "chatters"]),
    ("an elephant", ["trumpets"]),
    ("a bear", ["growls"]),
    ("a snake", ["hisses"]),
    ("a mouse", ["squeaks"]),
    ("whales", ["sing underwater"]),
    # people
    ("a baby", ["cries", "babbles", "laughs", "coos", "fusses"]),
    ("a toddler", ["giggles", "shrieks happily", "babbles"]),
    ("a child", ["laughs", "shouts", "sings", "cries"]),
    ("children", ["play and shout", "laugh together", "chant a rhyme"]),
    ("a man", ["speaks", "coughs", "sneezes", "laughs", "whistles", "snores", "clears his throat", "shouts", "whispers", "yawns", "hums"]),
    ("a woman", ["speaks", "laughs", "sings", "coughs", "sneezes", "whispers", "shouts", "hums", "sighs"]),
    ("a person", ["breathes heavily", "walks", "runs", "claps", "snaps their fingers", "chews", "gulps water", "burps", "hiccups", "sniffs"]),
    ("someone", ["types on a keyboard", "knocks on a door", "brushes their teeth", "sips a drink", "eats crunchy food", "zips a jacket", "flips through pages"]),
    ("a crowd", ["cheers", "applauds", "chatters", "boos", "chants"]),
    ("an audience", ["claps", "laughs", "applauds loudly"]),
    ("people", ["talk in the background", "laugh", "murmur", "walk past"]),
    ("a group of people", ["sing together", "cheer", "argue"]),
    ("a choir", ["sings", "sings a hymn"]),
    ("a speaker", ["gives a speech", "talks into a microphone"]),
    ("a sports commentator", ["speaks excitedly"]),
    ("a teacher", ["speaks to a class"]),
    # vehicles and transport
    ("a car", ["drives by", "starts its engine", "idles", "accelerates", "honks", "brakes hard", "passes on a wet road"]),
    ("a car engine", ["revs", "idles", "turns over and starts"]),
    ("a truck", ["rumbles past", "idles", "reverses with beeping"]),
    ("a bus", ["pulls away", "stops with a hiss of brakes"]),
    ("a motorcycle", ["roars past", "revs its engine", "idles"]),
    ("a scooter", ["buzzes by"]),
    ("a bicycle", ["rings its bell", "rattles over cobblestones"]),
    ("a train", ["passes", "rumbles on the tracks", "blows its horn", "screeches to a stop", "clatters over the rails"]),
    ("a subway train", ["arrives", "departs", "screeches around a curve"]),
    ("a tram", ["rings its bell", "rolls by"]),
    ("an airplane", ["flies overhead", "takes off", "lands", "roars on the runway"]),
    ("a jet", ["flies overhead", "roars past"]),
    ("a helicopter", ["flies over", "hovers", "whirs overhead"]),
    ("a boat", ["motors across the water", "sounds its horn"]),
    ("a ship", ["blows its horn"]),
    ("a siren", ["wails", "passes by", "blares"]),
    ("an ambulance", ["passes with its siren on"]),
    ("a police car", ["speeds by with its siren"]),
    ("a fire truck", ["blares its horn", "passes with sirens"]),
    ("a car horn", ["honks", "beeps twice", "blares"]),
    ("traffic", ["flows", "hums in the distance", "roars on a highway"]),
    ("a skateboard", ["rolls on pavement", "clacks on a curb"]),
    # household
    ("a door", ["opens", "closes", "slams", "creaks", "squeaks open"]),
    ("a wooden door", ["creaks", "is knocked on"]),
    ("a doorbell", ["rings", "chimes"]),
    ("a phone", ["rings", "vibrates on a table", "beeps"]),
    ("an alarm clock", ["rings", "beeps", "buzzes"]),
    ("a clock", ["ticks", "chimes the hour"]),
    ("a kettle", ["whistles", "boils"]),
    ("a microwave", ["hums", "beeps"]),
    ("a blender", ["whirs", "blends ice"]),
    ("a dishwasher", ["runs", "sloshes"]),
    ("a washing machine", ["spins", "runs a cycle", "thumps"]),
    ("a vacuum cleaner", ["runs", "hums", "sucks up dirt"]),
    ("a hair dryer", ["blows"]),
    ("a toilet", ["flushes"]),
    ("a shower", ["runs", "sprays water"]),
    ("a faucet", ["drips", "runs", "gushes"]),
    ("a refrigerator", ["hums"]),
    ("a fan", ["whirs", "hums"]),
    ("an air conditioner", ["hums", "rattles"]),
    ("a keyboard", ["clicks", "is typed on quickly"]),
    ("a computer mouse", ["clicks"]),
    ("a printer", ["prints", "whirs and feeds paper"]),
    ("a can", ["is opened", "fizzes as it opens"]),
    ("a bottle", ["is uncorked", "clinks", "is opened with a pop"]),
    ("glass", ["shatters", "breaks", "clinks"]),
    ("dishes", ["clatter", "are washed", "clink together"]),
    ("cutlery", ["clinks on plates"]),
    ("a pan", ["sizzles", "clangs"]),
    ("food", ["sizzles in a pan", "fries in oil"]),
    ("keys", ["jingle", "rattle"]),
    ("coins", ["jingle", "drop on a table"]),
    ("a zipper", ["zips"]),
    ("paper", ["rustles", "is crumpled", "is torn"]),
    ("a plastic bag", ["crinkles", "rustles"]),
    ("scissors", ["snip"]),
    ("a drawer", ["slides open", "slams shut"]),
    ("a chair", ["scrapes on the floor", "creaks"]),
    ("footsteps", ["echo in a hallway", "crunch on gravel", "creak on wooden stairs", "tap on tiles", "squelch in mud"]),
    ("high heels", ["click on a hard floor"]),
    ("a smoke alarm", ["beeps"]),
    ("a light switch", ["clicks"]),
    # tools and machines
    ("a chainsaw", ["cuts wood", "revs", "buzzes"]),
    ("a hand saw", ["saws wood", "rasps through a board"]),
    ("a hammer", ["hits a nail", "pounds metal"]),
    ("a drill", ["whirs", "drills into a wall"]),
    ("a jackhammer", ["pounds concrete"]),
    ("a lawn mower", ["runs", "mows the grass"]),
    ("a leaf blower", ["roars"]),
    ("a sewing machine", ["whirs", "stitches"]),
    ("a typewriter", ["clacks", "dings at the end of a line"]),
    ("an engine", ["runs", "sputters", "knocks", "hums"]),
    ("machinery", ["whirs", "clanks", "hums in a factory"]),
    ("a generator", ["drones"]),
    ("a compressor", ["hisses", "pumps"]),
    ("a cash register", ["rings", "opens"]),
    ("a camera shutter", ["clicks"]),
    ("a ratchet", ["clicks"]),
    ("a grinder", ["screeches on metal"]),
    # nature and weather
    ("rain", ["falls", "patters on a roof", "pours down", "drips from the trees", "hits a window", "drums on an umbrella"]),
    ("heavy rain", ["pours", "hammers the ground"]),
    ("thunder", ["rumbles", "cracks", "booms in the distance"]),
    ("a thunderstorm", ["rages", "rolls in"]),
    ("wind", ["blows", "howls", "whistles", "rustles the leaves", "gusts"]),
    ("leaves", ["rustle", "crunch underfoot"]),
    ("waves", ["crash on the shore", "lap against rocks", "break on a beach"]),
    ("the sea", ["roars", "washes over pebbles"]),
    ("a river", ["flows", "rushes over rocks"]),
    ("a stream", ["babbles", "trickles"]),
    ("a waterfall", ["roars", "splashes"]),
    ("water", ["drips", "splashes", "pours into a glass", "boils", "bubbles", "trickles"]),
    ("water drops", ["fall into a puddle", "drip in a cave"]),
    ("a fire", ["crackles", "roars", "pops"]),
    ("a campfire", ["crackles", "pops and hisses"]),
    ("ice", ["cracks", "clinks in a glass"]),
    ("snow", ["crunches underfoot"]),
    ("hail", ["hits a car roof"]),
    ("gravel", ["crunches"]),
    ("branches", ["snap", "creak in the wind"]),
    ("a tree", ["falls", "creaks"]),
    # music and signals
    ("a piano", ["plays", "plays a slow melody", "plays chords"]),
    ("a guitar", ["strums", "plays a riff", "is tuned"]),
    ("an electric guitar", ["plays a solo", "distorts"]),
    ("a violin", ["plays", "plays a sad tune"]),
    ("a cello", ["plays a low note"]),
    ("drums", ["play a beat", "roll"]),
    ("a drum kit", ["plays a fast rhythm"]),
    ("a flute", ["plays", "plays a melody"]),
    ("a trumpet", ["plays a fanfare", "blares"]),
    ("a saxophone", ["plays jazz"]),
    ("a harmonica", ["plays"]),
    ("an accordion", ["plays a waltz"]),
    ("bells", ["ring", "chime"]),
    ("church bells", ["ring", "toll", "chime in the distance"]),
    ("a bell", ["rings", "tolls", "dings"]),
    ("wind chimes", ["tinkle in the breeze"]),
    ("a music box", ["plays a tune"]),
    ("an orchestra", ["plays", "tunes up"]),
    ("a band", ["plays live music"]),
    ("a radio", ["plays music", "crackles with static"]),
    ("a television", ["plays in the background"]),
    ("a whistle", ["blows", "is blown by a referee"]),
    ("a buzzer", ["sounds"]),
    ("a metronome", ["ticks"]),
    ("fireworks", ["explode", "crackle and bang", "pop in the sky"]),
    ("firecrackers", ["pop"]),
    ("a gun", ["fires", "is shot twice"]),
    ("an explosion", ["booms", "echoes"]),
    ("a balloon", ["pops"]),
    ("a ball", ["bounces", "is kicked", "hits a bat"]),
    ("a tennis ball", ["is hit back and forth"]),
    ("a game of basketball", ["squeaks and thumps"]),
]

SCENES = [
    "in a busy street", "in a quiet room", "in the distance", "nearby", "outdoors", "indoors",
    "in a forest", "on a farm", "at the beach", "in a kitchen", "in an office", "in a park",
    "at night", "in the morning", "in a large hall", "in a small room", "in a city", "in the countryside",
    "in a parking lot", "at a train station", "in a garden", "in a backyard", "on a rainy day",
    "in a cafe", "in a classroom", "in a workshop", "in a stadium", "in a church", "under a bridge",
    "in a tunnel", "on a boat", "in a car", "near a road", "in a barn", "in a cave", "in the mountains",
    "at a market", "in a hospital corridor", "in a bathroom", "in the rain",
]

TEMPLATES = [
    "{source} {verb}",
    "{source} {verb} {scene}",
    "{Source} {verb} {scene}.",
    "{Source} {verb} while {source2} {verb2}.",
    "{Source} {verb} and {source2} {verb2} {scene}.",
    "a recording of {source} that {verb}",
    "you can hear {source} that {verb} {scene}",
    "{Source} {verb} in the background while {source2} {verb2}",
    "{Source} {verb} repeatedly {scene}",
    "{Source} {verb} loudly {scene}",
    "{Source} {verb} softly {scene}",
    "{source} {verb}, then silence",
    "a field recording {scene}: {source} {verb}",
    "{source} {verb} close to the microphone",
]


def captions(count: int = 6000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    # every (source, sound) pair once in plain form, so each label is covered
    for source, verbs in SOURCES:
        for verb in verbs:
            out.setdefault(f"{source} {verb}", None)
    while len(out) < count:
        (s1, v1), (s2, v2) = rng.sample(SOURCES, 2)
        t = rng.choice(TEMPLATES)
        line = t.format(
            source=s1, Source=s1[0].upper() + s1[1:], verb=rng.choice(v1),
            source2=s2, verb2=rng.choice(v2), scene=rng.choice(SCENES),
        )
        out.setdefault(line, None)
    return list(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "retrieval" / "data" / "captions.txt"))
    ap.add_argument("--count", type=int, default=6000)
    args = ap.parse_args()
    lines = captions(args.count)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    header = "# xmr default bridge captions: one per line. Regenerate with `python -m scripts.make_captions`.\n"
    Path(args.out).write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} captions to {args.out}")


if __name__ == "__main__":
    main()
