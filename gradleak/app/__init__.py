"""``gradleak app``: a local page where a teacher picks an image, an attack and defenses, and watches.

:mod:`gradleak.app.live` holds the logic (building the run, yielding frames, refusing bad
uploads) and needs no browser; :mod:`gradleak.app.ui` lays it out with Gradio, the optional
``app`` extra, imported only when the page is built.
"""
