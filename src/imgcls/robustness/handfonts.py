"""Hand fonts: the ten digits as fifteen people write them, from typefaces digitised from handwriting.

scikit-learn's digits are other writers' handwriting at 8x8; these are whole, sharp strokes at
full size, from hands that never saw MNIST's forms (flagged 1s, crossed 7s, open 4s). Each
typeface is one person's hand, taken from Debian's handwriting fonts, which imgcls does not ship:
the set is made from those installed (`apt-get install` the packages below), and a bench without
them says so. Each digit is drawn dark on white paper and turned 8 degrees either way, as a scan or
a photo of a page would hold it, and read through `imgcls predict`'s own path.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_ROOT = Path("/usr/share/fonts")
PACKAGES = {  # Debian package: its typefaces under FONT_ROOT, each one person's hand
    "fonts-bwht": tuple(f"opentype/bwht/BecauseWe{name}-Regular.otf"
                        for name in ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")),
    "fonts-breip": ("truetype/breip/Breip.ttf",),
    "fonts-dkg-handwriting": ("truetype/fifthhorseman/dkg.ttf",),
    "fonts-humor-sans": ("truetype/humor-sans/Humor-Sans.ttf",),
    "fonts-klee": ("truetype/klee/KleeOne-Regular.ttf",),
    "fonts-rufscript": ("truetype/rufscript/Rufscript010.ttf",),
    "fonts-seto": ("truetype/seto/setofont.ttf",),
    "fonts-sjfonts": ("truetype/sjfonts/Delphine.ttf", "truetype/sjfonts/SteveHand.ttf"),
    "fonts-yusei-magic": ("truetype/yusei-magic/YuseiMagic-Regular.ttf",),
}
PAGE = 240  # pixels a side: the digit, at SIZE, takes about half of it
SIZE = 140  # the font's size in pixels
INK, PAPER = 20, 255
ANGLES = (-8, 0, 8)  # degrees: the page held a little askew either way, and straight


def installed(root=FONT_ROOT):
    """The typefaces of PACKAGES found under `root`, in a fixed order."""
    return [root / name for names in PACKAGES.values() for name in names if (root / name).is_file()]


def write_font_digits(fonts, folder):
    """Each font's ten digits at each of ANGLES as folder/<digit>/<font>_<angle>.png."""
    folder = Path(folder)
    for path in fonts:
        font = ImageFont.truetype(str(path), SIZE)
        for digit in range(10):
            (folder / str(digit)).mkdir(parents=True, exist_ok=True)
            for angle in ANGLES:
                page = Image.new("L", (PAGE, PAGE), PAPER)
                ImageDraw.Draw(page).text((PAGE / 2, PAGE / 2), str(digit), font=font, fill=INK, anchor="mm")
                page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=PAPER)
                page.save(folder / str(digit) / f"{Path(path).stem}_{angle}.png")
