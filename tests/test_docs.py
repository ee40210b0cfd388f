"""The documents in docs/ check themselves.

Three kinds of test:

- every code block fenced exactly ```python in docs/*.md runs, the blocks of
  one file in order in one namespace, and what a block prints must equal its
  ``# prints: ...`` comments, line for line (blocks fenced ```python
  tensorflow, ```python keras, ... show another framework and do not run);
- every formula of docs/backward-rules.md is implemented here directly in
  NumPy (float64) and compared with minigrad's backward, and with central
  finite differences of the formula's own forward pass;
- every relative link in docs/*.md points to a file that exists, a link text
  naming a function or class names one defined in the linked file, and every
  ``tests/<file>.py::<name>`` reference names a test that exists.
"""
import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = sorted(DOCS.glob("*.md"))
REQUIRED = ["README.md", "engine.md", "backward-rules.md", "from-tensorflow-keras-pytorch.md", "higher-order.md"]


def rng(seed):
    return np.random.default_rng(seed)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar function f at the float64 array x (x is restored)."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = f(x)
        flat[i] = original - eps
        minus = f(x)
        flat[i] = original
        out[i] = (plus - minus) / (2 * eps)
    return grad


def close(actual, expected, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def leaf(array):
    return mg.tensor(np.array(array, dtype=np.float64), requires_grad=True)


# ----- the documents exist, and their code runs ------------------------------------------------

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
PRINTS = re.compile(r"#\s*prints:\s?(.*)$", re.M)


def code_blocks(path):
    """(line number, code) of each block of ``path`` fenced exactly ```python."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start()) + 2, match.group("body"))
            for match in FENCE.finditer(text) if match.group("info").strip() == "python"]


def test_the_documents_exist():
    for name in REQUIRED:
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


@pytest.mark.parametrize("name", ["engine.md", "from-tensorflow-keras-pytorch.md"])
def test_doc_has_runnable_examples(name):
    assert len(code_blocks(DOCS / name)) >= 5, f"docs/{name} should show its points in running code"


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_doc_code_blocks_run_and_print_what_they_say(path):
    namespace = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for line, code in code_blocks(path):
        expected = PRINTS.findall(code)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"docs/{path.name}, block at line {line}", "exec"), namespace)
        assert printed.getvalue().splitlines() == expected, (
            f"docs/{path.name}, block at line {line}: the printed lines differ from its '# prints:' comments")


def test_make_figures_draws_the_small_network_graph(tmp_path):
    """docs/make_figures.py still runs against the current draw_graph (as DOT, so Graphviz is not needed)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    path = str(tmp_path / "graph.dot")
    assert make_figures.small_network_graph(path) == path
    text = Path(path).read_text()
    for name in ("Linear", "BatchNorm", "ReLU", "CrossEntropy", "0.weight", "1.bias", "3.weight"):
        assert name in text


# ----- links and references ----------------------------------------------------------------------

LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
SYMBOL = re.compile(r"^`([A-Za-z_][\w.]*)(?:\(\))?`")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(heading) for heading in re.findall(r"^#+ (.*)$", text, re.M)}


def links(path):
    """(is image, text, target) of every markdown link outside code blocks."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [(bang == "!", label, target) for bang, label, target in LINK.findall(text)]


def defined_names(tree):
    """{name: node} of the top-level functions, classes and assignments of a module."""
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
    return names


def resolves(tree, parts):
    """Is the dotted name ``parts`` (a function, a class, or Class.member) defined in the module?"""
    names = defined_names(tree)
    if parts[0] not in names:
        return False
    node = names[parts[0]]
    for part in parts[1:]:
        if not isinstance(node, ast.ClassDef):
            return False
        node = defined_names(node).get(part)
        if node is None:
            return False
    return True


def test_relative_links_point_to_existing_files_and_named_code_exists():
    problems, missing_figures = [], []
    for path in DOC_FILES:
        for is_image, label, target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue  # a web address
            if target.startswith("#"):
                target = path.name + target  # an anchor on the same page
            target_path, _, anchor = target.partition("#")
            file = (path.parent / target_path).resolve()
            if not file.exists():
                if is_image and file.parent == DOCS / "images":
                    missing_figures.append(str(file.relative_to(ROOT)))
                else:
                    problems.append(f"docs/{path.name}: link to {target} ({label!r}): no such file")
                continue
            if anchor and file.suffix == ".md" and anchor not in anchors(file):
                problems.append(f"docs/{path.name}: link to {target}: {file.name} has no heading #{anchor}")
            symbol = SYMBOL.match(label)
            if file.suffix == ".py" and symbol and not symbol.group(1).endswith(".py"):
                # `F.batch_norm` or `mg.optim.Adam`: leading module aliases may be dropped
                parts = symbol.group(1).split(".")
                tree = ast.parse(file.read_text(encoding="utf-8"))
                if not any(resolves(tree, parts[i:]) for i in range(len(parts))):
                    problems.append(f"docs/{path.name}: {symbol.group(1)} is not defined in {target}")
    assert not problems, "\n".join(problems)
    if missing_figures:
        if hasattr(mg.utils, "draw_graph"):
            pytest.fail(f"figures not generated yet: {missing_figures}; run python docs/make_figures.py")
        pytest.skip(f"mg.utils.draw_graph does not exist yet, so these figures cannot be drawn: {missing_figures}")


def test_test_references_name_existing_tests():
    problems, count = [], 0
    for path in DOC_FILES:
        for file_name, test_name in TEST_REFERENCE.findall(path.read_text(encoding="utf-8")):
            count += 1
            file = ROOT / file_name
            if not file.is_file():
                problems.append(f"docs/{path.name}: {file_name} does not exist")
                continue
            tree = ast.parse(file.read_text(encoding="utf-8"))
            tests = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            if test_name not in tests:
                problems.append(f"docs/{path.name}: {file_name} has no test {test_name}")
    assert not problems, "\n".join(problems)
    assert count >= 20, "backward-rules.md should name the test that checks each rule"


# ----- backward-rules.md, formula by formula ---------------------------------------------------

def test_doc_linear_grads():
    r = rng(1)
    x, weight, bias, gy = r.standard_normal((5, 3)), r.standard_normal((4, 3)), r.standard_normal(4), \
        r.standard_normal((5, 4))
    # the doc: x_bar = y_bar W, W_bar = y_bar^T x, b_bar = 1^T y_bar
    gx, gw, gb = gy @ weight, gy.T @ x, gy.sum(axis=0)
    tx, tw, tb = leaf(x), leaf(weight), leaf(bias)
    F.linear(tx, tw, tb).backward(mg.tensor(gy))
    close(tx.grad.numpy(), gx)
    close(tw.grad.numpy(), gw)
    close(tb.grad.numpy(), gb)
    # finite differences of L = sum(y_bar * (x W^T + b)), whose gradients are the rule's
    close(gx, numeric_grad(lambda a: (gy * (a @ weight.T + bias)).sum(), x.copy()), rtol=1e-6, atol=1e-8)
    close(gw, numeric_grad(lambda a: (gy * (x @ a.T + bias)).sum(), weight.copy()), rtol=1e-6, atol=1e-8)
    close(gb, numeric_grad(lambda a: (gy * (x @ weight.T + a)).sum(), bias.copy()), rtol=1e-6, atol=1e-8)


def _windows(size, kernel, stride):
    return (size - kernel) // stride + 1


def conv_by_definition(x, weight, bias, stride, padding):
    """out[n,o,y,x] = b[o] + sum_{c,i,j} W[o,c,i,j] P[n,c,sh y+i,sw x+j], one kernel offset (i, j) at a time."""
    (sh, sw), (ph, pw) = stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _, _, kh, kw = weight.shape
    out_h, out_w = _windows(padded.shape[2], kh, sh), _windows(padded.shape[3], kw, sw)
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w)) + bias[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, :, i:i + sh * out_h:sh, j:j + sw * out_w:sw]
            out += np.einsum("oc,nchw->nohw", weight[:, :, i, j], patch)
    return out


def im2col_doc(padded, kh, kw, stride, out_h, out_w):
    """cols[(c,i,j), (n,y,x)] = P[n, c, sh y + i, sw x + j]."""
    (sh, sw), (n, c) = stride, padded.shape[:2]
    cols = np.empty((c * kh * kw, n * out_h * out_w))
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                cols[(ci * kh + i) * kw + j] = padded[:, ci, i:i + sh * out_h:sh, j:j + sw * out_w:sw].reshape(-1)
    return cols


def col2im_doc(grad_cols, padded_shape, kh, kw, stride, out_h, out_w):
    """The adjoint of im2col: each entry of cols is added back onto the pixel it was copied from."""
    (sh, sw), (n, c) = stride, padded_shape[:2]
    grad_padded = np.zeros(padded_shape)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = grad_cols[(ci * kh + i) * kw + j].reshape(n, out_h, out_w)
                grad_padded[:, ci, i:i + sh * out_h:sh, j:j + sw * out_w:sw] += row
    return grad_padded


@pytest.mark.parametrize("kernel, stride, padding", [((3, 2), (2, 1), (1, 1)), ((2, 2), (2, 2), (0, 0))])
def test_doc_conv_im2col_equivalence(kernel, stride, padding):
    r = rng(2)
    x = r.standard_normal((2, 3, 5, 6))
    weight, bias = r.standard_normal((4, 3, *kernel)), r.standard_normal(4)
    (kh, kw), (ph, pw) = kernel, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_h, out_w = _windows(padded.shape[2], kh, stride[0]), _windows(padded.shape[3], kw, stride[1])

    # forward: out2 = W2 cols + b 1^T, reshaped (O, N, Ho, Wo) and transposed to (N, O, Ho, Wo)
    cols = im2col_doc(padded, kh, kw, stride, out_h, out_w)
    weight2 = weight.reshape(4, -1)
    out = (weight2 @ cols + bias[:, None]).reshape(4, 2, out_h, out_w).transpose(1, 0, 2, 3)
    close(out, conv_by_definition(x, weight, bias, stride, padding))
    tx, tw, tb = leaf(x), leaf(weight), leaf(bias)
    mine = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    close(mine.numpy(), out)

    # backward: W2_bar = out2_bar cols^T, cols_bar = W2^T out2_bar, then col2im and crop the padding
    gy = r.standard_normal(out.shape)
    grad_out2 = gy.transpose(1, 0, 2, 3).reshape(4, -1)
    gw = (grad_out2 @ cols.T).reshape(weight.shape)
    grad_padded = col2im_doc(weight2.T @ grad_out2, padded.shape, kh, kw, stride, out_h, out_w)
    gx = grad_padded[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    gb = grad_out2.sum(axis=1)
    mine.backward(mg.tensor(gy))
    close(tx.grad.numpy(), gx)
    close(tw.grad.numpy(), gw)
    close(tb.grad.numpy(), gb)

    # finite differences of the definition
    def loss_of_x(a):
        return (gy * conv_by_definition(a, weight, bias, stride, padding)).sum()

    def loss_of_w(a):
        return (gy * conv_by_definition(x, a, bias, stride, padding)).sum()

    close(gx, numeric_grad(loss_of_x, x.copy()), rtol=1e-6, atol=1e-8)
    close(gw, numeric_grad(loss_of_w, weight.copy()), rtol=1e-6, atol=1e-8)

    # col2im is the adjoint of im2col: <im2col(a), B> = <a, col2im(B)>
    a, b = r.standard_normal(padded.shape), r.standard_normal(cols.shape)
    close((im2col_doc(a, kh, kw, stride, out_h, out_w) * b).sum(),
          (a * col2im_doc(b, padded.shape, kh, kw, stride, out_h, out_w)).sum())


def maxpool_doc(x, kernel, stride, padding, gy=None):
    """Max of each window (padding -inf); backward sends a window's gradient to its first maximum, row-major."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    out_h, out_w = _windows(padded.shape[2], kernel, stride), _windows(padded.shape[3], kernel, stride)
    out = np.empty((n, c, out_h, out_w))
    grad_padded = np.zeros(padded.shape)
    for b, ch, y, xx in np.ndindex(n, c, out_h, out_w):
        window = padded[b, ch, stride * y:stride * y + kernel, stride * xx:stride * xx + kernel].reshape(-1)
        first = int(np.argmax(window))  # argmax returns the first of tied maxima
        out[b, ch, y, xx] = window[first]
        if gy is not None:
            grad_padded[b, ch, stride * y + first // kernel, stride * xx + first % kernel] += gy[b, ch, y, xx]
    return out, grad_padded[:, :, padding:padding + h, padding:padding + w]


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
def test_doc_maxpool_first_max(kernel, stride, padding):
    r = rng(3)
    x = np.maximum(r.integers(-2, 3, size=(2, 2, 5, 5)).astype(np.float64), 0)  # many ties, as after a ReLU
    out, _ = maxpool_doc(x, kernel, stride, padding)
    gy = r.standard_normal(out.shape)
    _, gx = maxpool_doc(x, kernel, stride, padding, gy)
    tx = leaf(x)
    mine = F.max_pool2d(tx, kernel, stride, padding)
    close(mine.numpy(), out)
    mine.backward(mg.tensor(gy))
    close(tx.grad.numpy(), gx)
    # without ties the rule is the derivative: finite differences agree
    distinct = r.permutation(50).reshape(2, 1, 5, 5).astype(np.float64)
    _, gx = maxpool_doc(distinct, kernel, stride, padding, gy[:, :1])
    numeric = numeric_grad(lambda a: (gy[:, :1] * maxpool_doc(a, kernel, stride, padding)[0]).sum(),
                           distinct.copy(), eps=1e-3)
    close(gx, numeric, rtol=1e-6, atol=1e-8)


def test_doc_global_average_pool():
    r = rng(4)
    x, gy = r.standard_normal((2, 3, 4, 5)), r.standard_normal((2, 3, 1, 1))
    tx = leaf(x)
    out = F.adaptive_avg_pool2d(tx, 1)
    close(out.numpy(), x.mean(axis=(2, 3), keepdims=True))
    out.backward(mg.tensor(gy))
    close(tx.grad.numpy(), np.broadcast_to(gy / (4 * 5), x.shape))  # x_bar = y_bar / (H W)


def test_doc_relu():
    r = rng(5)
    x = np.array([[-2.0, -0.5, 0.0, 0.5], [3.0, 0.0, -1.0, 2.0]])
    gy = r.standard_normal(x.shape)
    tx = leaf(x)
    F.relu(tx).backward(mg.tensor(gy))
    close(tx.grad.numpy(), gy * (x > 0))  # slope 0 at x = 0, as PyTorch
    away_from_zero = np.where(x == 0, 1.0, x)
    close(numeric_grad(lambda a: (gy * np.maximum(a, 0)).sum(), away_from_zero.copy()),
          gy * (away_from_zero > 0), rtol=1e-6, atol=1e-8)


def log_sum_exp(z):
    """m + log sum e^(z - m), m = max z, per row: nothing overflows."""
    top = z.max(axis=1, keepdims=True)
    return top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))


def softmax(z):
    return np.exp(z - log_sum_exp(z))


def test_doc_softmax_cross_entropy_grad():
    r = rng(6)
    n, classes = 5, 4
    z, t = r.standard_normal((n, classes)), r.integers(0, classes, n)
    onehot = np.eye(classes)[t]

    def loss(logits):  # the mean of -z_t + log sum e^z
        return (-logits[np.arange(n), t] + log_sum_exp(logits)[:, 0]).mean()

    grad = (softmax(z) - onehot) / n  # the doc: (p - onehot(t)) / N
    tz = leaf(z)
    out = F.cross_entropy(tz, mg.tensor(t))
    close(out.item(), loss(z))
    out.backward()
    close(tz.grad.numpy(), grad)
    close(grad, numeric_grad(loss, z.copy()), rtol=1e-6, atol=1e-9)

    # reduction="sum" does not divide by N
    tz = leaf(z)
    F.cross_entropy(tz, mg.tensor(t), reduction="sum").backward()
    close(tz.grad.numpy(), softmax(z) - onehot)

    # probability targets q: z_bar = p sum(q) - q (rows of q need not sum to 1)
    q = r.random((n, classes))
    tz = leaf(z)
    F.cross_entropy(tz, mg.tensor(q)).backward()
    close(tz.grad.numpy(), (softmax(z) * q.sum(axis=1, keepdims=True) - q) / n)
    close(tz.grad.numpy(), numeric_grad(lambda a: (-(q * (a - log_sum_exp(a))).sum(axis=1)).mean(), z.copy()),
          rtol=1e-6, atol=1e-9)

    # huge logits: the stable log-sum-exp stays finite, and so does everything built on it
    huge = z * 1e4
    tz = leaf(huge)
    out = F.cross_entropy(tz, mg.tensor(t))
    assert np.isfinite(out.item())
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.log(np.exp(huge).sum(axis=1))).all(), "the naive formula overflows"
    close(out.item(), loss(huge))
    out.backward()
    close(tz.grad.numpy(), (softmax(huge) - onehot) / n)


def _channel_axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, x):
    return v.reshape((1, -1) if x.ndim == 2 else (1, -1, 1, 1))


def batch_norm_doc(x, gamma, beta, eps):
    """Training forward: (y, x_hat, s) with mu, the biased variance, s = 1/sqrt(var + eps)."""
    axes = _channel_axes(x)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    s = 1 / np.sqrt(var + eps)
    x_hat = (x - mu) * s
    return _per_channel(gamma, x) * x_hat + _per_channel(beta, x), x_hat, s


def batch_norm_backward_doc(gy, x_hat, s, gamma):
    """The fused rule: x_bar = gamma s / m (m y_bar - sum y_bar - x_hat sum(y_bar x_hat)); gamma_bar, beta_bar."""
    axes = _channel_axes(gy)
    m = gy.size // gy.shape[1]
    sum_gy = gy.sum(axis=axes, keepdims=True)
    sum_gy_x_hat = (gy * x_hat).sum(axis=axes, keepdims=True)
    gx = _per_channel(gamma, gy) * s / m * (m * gy - sum_gy - x_hat * sum_gy_x_hat)
    return gx, sum_gy_x_hat.reshape(-1), sum_gy.reshape(-1)


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 2, 2)])
def test_doc_batchnorm_fused_formula(shape):
    r = rng(7)
    channels, eps = shape[1], 1e-3
    x = 2 + 3 * r.standard_normal(shape)
    gamma, beta, gy = r.standard_normal(channels), r.standard_normal(channels), r.standard_normal(shape)
    y, x_hat, s = batch_norm_doc(x, gamma, beta, eps)
    gx, g_gamma, g_beta = batch_norm_backward_doc(gy, x_hat, s, gamma)

    tx, tg, tb = leaf(x), leaf(gamma), leaf(beta)
    running_mean, running_var = mg.zeros(channels, dtype=mg.float64), mg.ones(channels, dtype=mg.float64)
    out = F.batch_norm(tx, running_mean, running_var, tg, tb, training=True, eps=eps)
    close(out.numpy(), y)
    out.backward(mg.tensor(gy))
    close(tx.grad.numpy(), gx)
    close(tg.grad.numpy(), g_gamma)
    close(tb.grad.numpy(), g_beta)

    def loss(a, g=gamma, b=beta):
        return (gy * batch_norm_doc(a, g, b, eps)[0]).sum()

    close(gx, numeric_grad(loss, x.copy()), rtol=1e-5, atol=1e-8)
    close(g_gamma, numeric_grad(lambda g: loss(x, g=g), gamma.copy()), rtol=1e-6, atol=1e-8)
    close(g_beta, numeric_grad(lambda b: loss(x, b=b), beta.copy()), rtol=1e-6, atol=1e-8)

    # the two subtracted terms: x_bar sums to zero per channel, and (with eps = 0) is orthogonal to x_hat
    axes = _channel_axes(x)
    close(gx.sum(axis=axes), 0, atol=1e-12)
    _, x_hat0, s0 = batch_norm_doc(x, gamma, beta, 0.0)
    gx0, _, _ = batch_norm_backward_doc(gy, x_hat0, s0, gamma)
    close((gx0 * x_hat0).sum(axis=axes), 0, atol=1e-12)


def test_doc_batchnorm_jacobian():
    r = rng(8)
    m, eps = 5, 1e-3
    x = r.standard_normal(m)
    mu, var = x.mean(), x.var()
    s = 1 / np.sqrt(var + eps)
    x_hat = (x - mu) * s

    # d mu/dx_j = 1/m, d var/dx_j = 2/m (x_j - mu), d s/dx_j = -s^2/m x_hat_j
    close(numeric_grad(lambda a: a.mean(), x.copy()), np.full(m, 1 / m), rtol=1e-6)
    close(numeric_grad(lambda a: a.var(), x.copy()), 2 / m * (x - mu), rtol=1e-6, atol=1e-9)
    close(numeric_grad(lambda a: 1 / np.sqrt(a.var() + eps), x.copy()), -s ** 2 / m * x_hat, rtol=1e-6, atol=1e-9)
    # d x_hat_i/dx_j = s (delta_ij - 1/m - x_hat_i x_hat_j / m)
    jacobian = s * (np.eye(m) - 1 / m - np.outer(x_hat, x_hat) / m)
    for i in range(m):
        row = numeric_grad(lambda a: (a[i] - a.mean()) / np.sqrt(a.var() + eps), x.copy())
        close(row, jacobian[i], rtol=1e-6, atol=1e-9)


def test_doc_batchnorm_running_statistics_and_eval():
    r = rng(9)
    channels, momentum, eps = 3, 0.1, 1e-5
    running_mean, running_var = mg.zeros(channels, dtype=mg.float64), mg.ones(channels, dtype=mg.float64)
    expected_mean, expected_var = np.zeros(channels), np.ones(channels)
    for shape in [(8, channels), (4, channels), (5, channels)]:
        x = 1 + 2 * r.standard_normal(shape)
        F.batch_norm(mg.tensor(x), running_mean, running_var, training=True, momentum=momentum, eps=eps)
        m = shape[0]
        # running <- (1 - momentum) running + momentum batch_stat, the variance unbiased: m/(m-1) var
        expected_mean = (1 - momentum) * expected_mean + momentum * x.mean(axis=0)
        expected_var = (1 - momentum) * expected_var + momentum * m / (m - 1) * x.var(axis=0)
        close(running_mean.numpy(), expected_mean)
        close(running_var.numpy(), expected_var)

    # eval: an elementwise affine map with the running statistics, x_bar = gamma / sqrt(var_run + eps) y_bar
    x, gamma, beta, gy = r.standard_normal((4, channels)), r.standard_normal(channels), \
        r.standard_normal(channels), r.standard_normal((4, channels))
    tx = leaf(x)
    out = F.batch_norm(tx, running_mean, running_var, mg.tensor(gamma), mg.tensor(beta), training=False, eps=eps)
    close(out.numpy(), gamma * (x - expected_mean) / np.sqrt(expected_var + eps) + beta)
    out.backward(mg.tensor(gy))
    close(tx.grad.numpy(), gamma / np.sqrt(expected_var + eps) * gy)
    close(running_mean.numpy(), expected_mean)  # eval leaves the running statistics alone

    # momentum=None: a cumulative average, batch k weighted 1/k
    layer = nn.BatchNorm1d(channels, momentum=None)
    batches = [r.standard_normal((6, channels)) for _ in range(3)]
    for batch in batches:
        layer(mg.tensor(batch, dtype=mg.float32))
    close(layer.running_mean.numpy(), np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_doc_dropout_scaling(p):
    r = rng(10)
    x, gy = 1 + np.abs(r.standard_normal((40, 50))), r.standard_normal((40, 50))
    mg.manual_seed(11)
    tx = leaf(x)
    y = F.dropout(tx, p, training=True)
    mask = np.round(y.numpy() / x * (1 - p))  # r_i, recovered from y_i = r_i x_i / (1 - p)
    assert set(np.unique(mask)) == {0.0, 1.0}
    close(y.numpy(), mask / (1 - p) * x)
    assert abs(mask.mean() - (1 - p)) < 0.05  # kept with probability 1 - p
    y.backward(mg.tensor(gy))
    close(tx.grad.numpy(), mask / (1 - p) * gy)  # x_bar = r / (1 - p) y_bar: the same mask
    assert F.dropout(tx, p, training=False) is tx  # inverted dropout: the identity at inference
    assert abs(F.dropout(mg.tensor(np.full(200_000, 2.0)), p).numpy().mean() - 2.0) < 0.02  # E[y] = x
    assert (F.dropout(tx, 1.0).numpy() == 0).all()


def adam_doc(theta, grads, lr, betas, eps, weight_decay=0.0, decoupled=False):
    """The textbook Adam of the doc: m, v, the bias corrections, theta -= lr m_hat / (sqrt(v_hat) + eps)."""
    beta1, beta2 = betas
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


@pytest.mark.parametrize("optimizer, weight_decay", [("Adam", 0.0), ("Adam", 0.1), ("AdamW", 0.1)])
def test_doc_adam_update(optimizer, weight_decay):
    r = rng(12)
    theta0, grads = r.standard_normal((3, 4)), [r.standard_normal((3, 4)) for _ in range(4)]
    lr, betas, eps = 1e-2, (0.9, 0.999), 1e-8
    p = mg.tensor(theta0, requires_grad=True)
    step = getattr(mg.optim, optimizer)([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    for t, g in enumerate(grads, start=1):
        p.grad = mg.tensor(g)
        step.step()
        expected = adam_doc(theta0, grads[:t], lr, betas, eps, weight_decay, decoupled=optimizer == "AdamW")
        close(p.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_doc_adam_bias_correction_and_tf_epsilon():
    beta1, beta2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    # with a constant gradient g, m_t = (1 - beta1^t) g, so m_hat = g exactly
    g, m = 0.3, 0.0
    for t in range(1, 6):
        m = beta1 * m + (1 - beta1) * g
        close(m, (1 - beta1 ** t) * g)
    # TF 1 / Keras: lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps_hat) is the doc's step
    # with eps = eps_hat / sqrt(1 - beta2^t)
    r = rng(13)
    theta, grads = r.standard_normal(5), [r.standard_normal(5) for _ in range(3)]
    m, v, tf_theta = np.zeros(5), np.zeros(5), theta.copy()
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        eps_hat = eps * np.sqrt(1 - beta2 ** t)
        tf_theta = tf_theta - lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m / (np.sqrt(v) + eps_hat)
        pytorch_theta = adam_doc(theta, grads[:t], lr, (beta1, beta2), eps)
        close(tf_theta, pytorch_theta, rtol=1e-12)


def winograd_doc_matrices(m, r, points=(0, 1, -1, 2, -2, 0.5, -0.5)):
    """A^T = V_m^T, G = V_r, B^T = V_n^-T, from the Vandermonde matrices of the doc."""
    n = m + r - 1

    def vandermonde(k):
        rows = [[a ** j for j in range(k)] for a in points[:n - 1]]
        return np.array(rows + [[0.0] * (k - 1) + [1.0]])
    return vandermonde(m).T, vandermonde(r), np.linalg.inv(vandermonde(n)).T


def test_doc_winograd_tile_and_its_backward():
    m, r = 4, 5
    n = m + r - 1
    a_t, g_m, b_t = winograd_doc_matrices(m, r)
    x = rng(11).standard_normal((1, 16, n, n))  # one n x n tile, 16 channels: the node uses Winograd
    w = rng(12).standard_normal((2, 16, r, r))

    # forward: U_f = (G w G^T)_f, V_f = (B^T d B)_f, M_f = U_f V_f, Y = A^T M A
    def tile_forward(x, w):
        u = np.einsum("ai,ocij,bj->aboc", g_m, w, g_m)  # (n, n, O, C)
        v = np.einsum("ai,cij,bj->abc", b_t, x[0], b_t)  # (n, n, C)
        products = np.einsum("aboc,abc->abo", u, v)  # M_f = U_f V_f at every position f = (a, b)
        return np.einsum("pa,abo,qb->opq", a_t, products, a_t)[None]  # (1, O, m, m)
    y = tile_forward(x, w)
    close(y, conv_by_definition(x, w, np.zeros(2), (1, 1), (0, 0)), rtol=1e-9, atol=1e-10)
    tx, tw = leaf(x), leaf(w)
    out = F.conv2d(tx, tw)  # minigrad's own route (F(2x2, 5x5) tiles, for precision): the same numbers
    close(out.numpy(), y, rtol=1e-9, atol=1e-10)

    # backward: M_bar = A Y_bar A^T, U_bar_f = M_bar_f V_f^T, w_bar = G^T U_bar G,
    # V_bar_f = U_f^T M_bar_f, d_bar = B V_bar B^T
    gy = rng(13).standard_normal(y.shape)
    u = np.einsum("ai,ocij,bj->aboc", g_m, w, g_m)
    v = np.einsum("ai,cij,bj->abc", b_t, x[0], b_t)
    grad_m = np.einsum("pa,opq,qb->abo", a_t, gy[0], a_t)
    grad_u = np.einsum("abo,abc->aboc", grad_m, v)
    grad_w = np.einsum("ai,aboc,bj->ocij", g_m, grad_u, g_m)
    grad_v = np.einsum("aboc,abo->abc", u, grad_m)
    grad_x = np.einsum("ai,abc,bj->cij", b_t, grad_v, b_t)[None]
    close(grad_x, numeric_grad(lambda x_: (tile_forward(x_, w) * gy).sum(), x.copy()), rtol=1e-6, atol=1e-6)
    close(grad_w, numeric_grad(lambda w_: (tile_forward(x, w_) * gy).sum(), w.copy()), rtol=1e-6, atol=1e-6)
    out.backward(mg.tensor(gy))
    close(tx.grad.numpy(), grad_x, rtol=1e-9, atol=1e-9)
    close(tw.grad.numpy(), grad_w, rtol=1e-9, atol=1e-9)

    # the bias: b added to M at the position of the point 1 (index 1 of the points) reaches every output
    b = rng(14).standard_normal(2)
    assert np.allclose(a_t[:, 1], 1)
    products = np.einsum("aboc,abc->abo", u, v)
    products[1, 1] += b
    y_bias = np.einsum("pa,abo,qb->opq", a_t, products, a_t)[None]
    close(y_bias, conv_by_definition(x, w, b, (1, 1), (0, 0)), rtol=1e-9, atol=1e-10)
    close(F.conv2d(leaf(x), leaf(w), leaf(b)).numpy(), y_bias, rtol=1e-9, atol=1e-10)
