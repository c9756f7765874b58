"""Training the forecast model: windows cut from traces (:mod:`.data`), the loss
(:mod:`.loss`), the training loop (:mod:`.train`) and the tail shape fitted on validation
windows, for one network or a seed ensemble joined from several (:mod:`.calibration`).

Inference (``sliceai.forecast``: config, model, pipeline, checkpoint) never imports this
package; ``sliceai train`` and the bundled checkpoint's recipe
(``research/forecast/default_model.py``) do.
"""
