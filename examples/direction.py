"""Reading a direction: what a vector in the residual space says through the unembedding."""

# --8<-- [start:pairs]
import torch
import lensbox
from lensbox.lenses import read_direction

model = lensbox.load_model()
adapter = lensbox.adapt(model)
W_E = adapter.W_E.detach()


def tok(text):
    return model.to_single_token(text)                  # refuses text that is not exactly one token


pairs = [(" king", " queen"), (" Paris", " France"), (" walked", " walk"), (" dogs", " dog")]
directions = torch.stack([W_E[tok(a)] - W_E[tok(b)] for a, b in pairs])   # [4, d_model]
labels = [f"{a!r} - {b!r}" for a, b in pairs]
plain = read_direction(model, directions, k=6, labels=labels)
print(plain.table(k=6))
# --8<-- [end:pairs]

# --8<-- [start:axis]
# Why do ' king' - ' queen' and ' walked' - ' walk' promote rare word pieces? Find the top principal
# direction of the (centred) embeddings by power iteration and read it as a direction itself.
X = (W_E - W_E.mean(0)).float()
axis = torch.ones(X.shape[1], device=X.device)
for _ in range(20):
    axis = X.T @ (X @ axis)
    axis = axis / axis.norm()
print(read_direction(model, axis, k=6, labels=["top principal direction of W_E"]).table(k=6))
cosines = (directions.float() @ axis) / directions.float().norm(dim=-1)
print("cosine of each difference with it:", ", ".join(f"{c:+.2f}" for c in cosines.tolist()))
# --8<-- [end:axis]

# --8<-- [start:clean]
# Project that axis out of each difference and read again; norm="final" passes them through the final norm too.
cleaned = directions.float() - (directions.float() @ axis)[:, None] * axis
clean = read_direction(model, cleaned, k=6, labels=labels)
print(clean.table(k=6))
clean_final = read_direction(model, cleaned, k=6, labels=labels, norm="final")
# --8<-- [end:clean]

# --8<-- [start:many]
# Thousands of directions at once: every one of 2,048 token embeddings, read back through W_U.
# The work runs in chunks (256 directions x 8,192 tokens), never [2048, vocab] at once.
gen = torch.Generator().manual_seed(0)
ids = torch.randperm(adapter.d_vocab, generator=gen)[:2048]
many = read_direction(model, W_E[ids.to(W_E.device)], k=5)
self_top1 = (many.top_ids[:, 0] == ids).float().mean()
self_top5 = (many.top_ids == ids[:, None]).any(-1).float().mean()
print(f"{len(many)} embeddings: {float(self_top1):.1%} read back as their own token at top-1, {float(self_top5):.1%} in the top 5")
# --8<-- [end:many]

if __name__ == "__main__":
    pass
