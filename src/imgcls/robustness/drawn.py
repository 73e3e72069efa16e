"""Drawn digits: MNIST test digits redrawn as mouse strokes on the project's own drawing page.

Each digit is thinned to its skeleton, traced into pen strokes, and drawn by headless Chromium on
the page that `imgcls serve` offers; the label is read from the page's own /predict answer, so the
benchmark measures what a user drawing with a mouse gets: the page's pen, canvas and PNG, and the
server's preprocessing.
"""

import math
import os

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.measure import approximate_polygon
from skimage.morphology import skeletonize

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UPSAMPLE = 4        # skeletons of 28x28 digits are blocky; four times finer gives smooth strokes
SPUR = 1.0          # digit pixels a thinning artefact may reach beyond its stroke's ink
TOLERANCE = 0.3     # digit pixels: polyline simplification, below the page's smallest pen
SPAN = (0.3, 0.9)   # the inked digit's larger side, as a fraction of the canvas's smaller side
PEN = (0.05, 0.22)  # pen width relative to the digit's span, fine to thick (MNIST's is ~0.12)
TILT = 12           # degrees either way: a slight slant, as a hand draws
MARGIN = 0.04       # of the canvas: keep clear of the page's rounded corners
STEP = 40           # canvas pixels, at most, per mouse move (each costs a frame, ~17 ms, in headless
                    # Chromium); the page draws straight lines between moves, so more add no ink
OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def skeleton_graph(digit):
    """(the digit's skeleton as {(row, col): set of neighbours}, the ink's depth: each pixel's
    distance to the background), both on a grid UPSAMPLE times finer than the digit's.

    A diagonal link is dropped where both pixels also touch through a shared side neighbour, so
    that a bend is one path and not a triangle the tracer would walk twice."""
    big = ndimage.zoom(np.asarray(digit, dtype=np.float32) / 255, UPSAMPLE, order=3)
    ink = ndimage.gaussian_filter(big, UPSAMPLE / 3) > 0.4
    pixels = set(zip(*map(np.ndarray.tolist, np.nonzero(skeletonize(ink)))))
    graph = {}
    for r, c in pixels:
        graph[r, c] = {(r + dr, c + dc) for dr, dc in OFFSETS if (r + dr, c + dc) in pixels
                       and not (dr and dc and ((r + dr, c) in pixels or (r, c + dc) in pixels))}
    return graph, ndimage.distance_transform_edt(ink)


def prune_spurs(graph, depth):
    """Remove the side branches that thinning grows into a thick stroke's corners: those that end
    within the stroke, no further from their junction than its ink reaches (plus SPUR)."""
    for end in [p for p, near in graph.items() if len(near) == 1]:
        prev, cur, branch = None, end, [end]
        while len(graph[cur]) == 2 or cur == end:
            step = [p for p in graph[cur] if p != prev]
            if not step:
                break
            prev, cur = cur, step[0]
            branch.append(cur)
        if len(graph[cur]) >= 3 and math.dist(end, cur) < depth[cur] + SPUR * UPSAMPLE:
            for p in branch[:-1]:
                for q in graph.pop(p):
                    graph[q].discard(p)
    return graph


def heading(graph, used, origin, first, look=4):
    """Where a branch leaving `origin` through `first` is going, a few pixels on."""
    prev, cur = origin, first
    for _ in range(look):
        step = [p for p in graph[cur] if p != prev and frozenset((cur, p)) not in used]
        if len(step) != 1:
            break
        prev, cur = cur, step[0]
    return np.subtract(cur, origin) / max(math.dist(cur, origin), 1e-9)


def walk(graph, used, start):
    """One pen stroke: follow unused links from `start`, going straight on at junctions."""
    path = [start]
    while True:
        cur = path[-1]
        free = sorted(p for p in graph[cur] if frozenset((cur, p)) not in used)
        if not free:
            return path
        nxt = free[0]
        if len(free) > 1 and len(path) > 1:
            back = path[max(0, len(path) - 1 - 2 * UPSAMPLE)]
            ahead = np.subtract(cur, back) / max(math.dist(cur, back), 1e-9)
            nxt = max(free, key=lambda p: float(heading(graph, used, cur, p) @ ahead))
        used.add(frozenset((cur, nxt)))
        path.append(nxt)


def trace_strokes(digit):
    """The digit's pen strokes: a list of (n, 2) float arrays of (x, y) in the digit's pixels.

    Strokes start at free ends, top first, as a hand would; what remains after that is loops
    (a 0, the rings of an 8), each drawn from its top."""
    graph = prune_spurs(*skeleton_graph(digit))
    used, paths = set(), []
    while True:
        free = [p for p, near in graph.items() if any(frozenset((p, q)) not in used for q in near)]
        if not free:
            break
        ends = [p for p in free if sum(frozenset((p, q)) not in used for q in graph[p]) % 2]
        paths.append(walk(graph, used, min(ends or free)))
    if not paths and graph:  # a lone dot
        paths = [[min(graph)]]
    strokes = []
    for path in paths:
        points = (np.asarray(path, dtype=np.float64)[:, ::-1] + 0.5) / UPSAMPLE - 0.5
        strokes.append(approximate_polygon(points, TOLERANCE) if len(points) > 2 else points)
    return strokes


def strokes_for(digit, rng, canvas=(280, 280)):
    """(polylines [(x, y), ...] in canvas pixels, pen width): the digit as a user might draw it,
    at a random size, position, slant and pen width drawn from `rng`.

    The pen is relative to the digit's size because the server scales every drawing to MNIST's
    20x20 box: what reaches the model is the pen's width against the digit's."""
    strokes = trace_strokes(digit)
    points = np.concatenate(strokes)
    angle = math.radians(rng.uniform(-TILT, TILT))
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    middle = (points.max(0) + points.min(0)) / 2
    strokes = [(s - middle) @ turn.T for s in strokes]
    points = np.concatenate(strokes)
    extent = np.maximum(points.max(0) - points.min(0), 1.0)
    relative_pen = math.exp(rng.uniform(*np.log(PEN)))
    span = rng.uniform(*SPAN) * min(canvas)
    scale = span / (extent.max() * (1 + relative_pen))
    pen = relative_pen * extent.max() * scale
    low = points.min(0) * scale
    high = points.max(0) * scale
    room_low = MARGIN * np.asarray(canvas) + pen / 2 - low
    room_high = (1 - MARGIN) * np.asarray(canvas) - pen / 2 - high
    centre = rng.uniform(room_low, np.maximum(room_low, room_high))
    polylines = [[(float(x), float(y)) for x, y in s * scale + centre] for s in strokes]
    return polylines, float(pen)


def render_strokes(polylines, pen_width, canvas=(280, 280)):
    """The strokes drawn as the page draws them, white on black with round ends and joins: a uint8
    (height, width) image, for checking strokes without a browser."""
    image = Image.new("L", canvas, 0)
    draw = ImageDraw.Draw(image)
    r = pen_width / 2
    for line in polylines:
        if len(line) > 1:
            draw.line(line, fill=255, width=max(1, round(pen_width)), joint="curve")
        for x, y in (line[0], line[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(image)


def draw(page, box, canvas, polylines):
    """Draw the strokes with the mouse, waiting for the page's /predict answer to each stroke:
    the answers, in order (the last one is for the whole digit)."""
    sx, sy = box["width"] / canvas[0], box["height"] / canvas[1]
    answers = []
    for line in polylines:
        prev = line[0]
        page.mouse.move(box["x"] + prev[0] * sx, box["y"] + prev[1] * sy)
        page.mouse.down()
        for point in line[1:]:
            steps = max(1, math.ceil(math.dist(prev, point) / STEP))
            page.mouse.move(box["x"] + point[0] * sx, box["y"] + point[1] * sy, steps=steps)
            prev = point
        with page.expect_response("**/predict**") as answer:
            page.mouse.up()  # the page sends the canvas at the end of each stroke
        answers.append(answer.value.json())
    return answers


def read_drawn(url, digits, labels, seed=0, chromium=CHROMIUM):
    """Draw each digit on the page served at `url` and read the page's own answer.

    Returns {"accuracy", "predicted": top class names, "requests": /predict answers per digit,
    "strokes": strokes per digit}. Before each digit the page's Clear button empties the canvas
    and the canvas's data-pen attribute sets the pen width."""
    from playwright.sync_api import sync_playwright  # only the browser benchmark needs it

    rng = np.random.default_rng(seed)
    predicted, requests, strokes = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 820, "height": 560})
            # Headless Chromium renders no frames unless asked, so the idle time in which it
            # encodes canvas.toBlob comes only after a 1 s timeout; a browser on a screen has it
            # at once. An empty animation loop gives it back without touching the page's code.
            page.add_init_script("(function frame() { requestAnimationFrame(frame); })()")
            page.goto(url)
            page.wait_for_selector("body[data-ready]")
            pad = page.locator("#pad")
            canvas = tuple(pad.evaluate("pad => [pad.width, pad.height]"))
            box = pad.bounding_box()
            for digit in digits:
                polylines, pen = strokes_for(digit, rng, canvas)
                page.click("#clear")
                pad.evaluate("(pad, pen) => { pad.dataset.pen = pen; }", pen)
                answers = draw(page, box, canvas, polylines)
                predicted.append(answers[-1]["top"][0]["class"])
                requests.append(len(answers))
                strokes.append(len(polylines))
        finally:
            browser.close()
    correct = [p == str(y) for p, y in zip(predicted, labels)]
    return {"accuracy": float(np.mean(correct)) if correct else float("nan"), "predicted": predicted,
            "requests": requests, "strokes": strokes}
