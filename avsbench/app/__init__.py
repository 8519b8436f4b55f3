"""`avsbench app`: a local web app (gradio) to segment the sounding objects of a video
(docs/APP.md). `folders`: the models and video folders, read only inside them;
`results`: one prediction for the page (no gradio); `ui`: the page; `server`: start,
serve, clean up. Importing this package does not import gradio.
"""
