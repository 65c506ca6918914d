"""Scoring what the models do; nothing here trains.

* ``diagnosis``: an image model's logits and accuracy;
* ``metrics``: report scores (pycocoevalcap's BLEU, ROUGE-L, CIDEr, METEOR) and the clinical read-back;
* ``localisation``: how well a map (CAM, attention) points at a region, beside its chance level;
* ``reports``: writing reports free-running, and every score of Part III on a set of tiles;
* ``decoder_trace``: inside a greedy decode, the LSTM's gates, cell state and context vector per word;
* ``retrieval``: ranking tiles by a symptom description;
* ``figures``: the figures a reference model stores, computed the same way wherever they are compared.
"""
