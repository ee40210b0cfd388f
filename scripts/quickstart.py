"""The README's first example: a BatchNorm MLP (seed 002's shape) learns a toy rule in a second."""
import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn

mg.manual_seed(0)
# 512 points with 20 features; the class is which of 10 features is largest.
x = mg.randn(512, 20)
y = mg.tensor(x.numpy()[:, :10].argmax(axis=1))

model = nn.Sequential(nn.Linear(20, 50), nn.BatchNorm1d(50), nn.ReLU(), nn.Linear(50, 10))
optimizer = mg.optim.Adam(model.parameters(), lr=1e-2)

for step in range(200):
    batch = np.random.default_rng(step).choice(512, size=64, replace=False)
    loss = F.cross_entropy(model(x[batch]), y[batch])
    optimizer.zero_grad()
    loss.backward()   # fills p.grad for every parameter
    optimizer.step()  # Adam, exactly as torch.optim.Adam

model.eval()          # BatchNorm now uses its running averages
with mg.no_grad():
    accuracy = (model(x).argmax(axis=1) == y).numpy().mean()
print(f"last batch loss {loss.item():.3f}, training accuracy {accuracy:.1%}")
