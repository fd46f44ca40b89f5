"""Helpers shared by the Pyro backend's tests."""

import torch


def elbo_gradient_estimates(elbo, model, guide, params, replicates: int) -> list:
    """``replicates`` independent estimates of the ELBO's gradient in each of ``params`` (the
    guide's arguments), as NumPy arrays stacked on a first axis."""
    estimates = [[] for _ in params]
    for _ in range(replicates):
        leaves = [p.clone().requires_grad_() for p in params]
        loss = elbo.differentiable_loss(model, guide, *leaves)
        for store, grad in zip(estimates, torch.autograd.grad(-loss, leaves), strict=True):
            store.append(grad)
    return [torch.stack(store).numpy() for store in estimates]
