# Docker NAT topologies (docker/, docker/README.md).
#   make docker-lab      install docker.io, docker-compose, debootstrap if missing
#                        (tools/deps.sh docker), build the images (the debootstrap
#                        base is cached under build/docker/), start the lab's own
#                        engine unless it runs, run DOCKER_LAB_PAIRS (each peer
#                        behind a router of that NAT type; they punch through the
#                        coordinator and exchange messages), tear everything down
#   make docker-images   only the images, the engine left running for docker-compose
#                        by hand (docker/engine.sh stop ends it)
#   DOCKER_LAB_DIR       the base image cache and the engine's data root (default
#                        build/docker; a directory outside the tree keeps them across
#                        clean clones: the first run's debootstrap is most of its time)
DOCKER_LAB_PAIRS ?= port-restricted:symmetric full:port-restricted symmetric-predictable:port-restricted
DOCKER_LAB_DIR   ?= $(CURDIR)/$(BUILD)/docker

.PHONY: docker-lab docker-images
docker-lab: all
	$(Q)tools/deps.sh docker
	$(Q)CRUST=$(CURDIR)/$(BUILD)/crust DOCKER_LAB_DIR=$(DOCKER_LAB_DIR) \
		docker/lab.sh run $(DOCKER_LAB_PAIRS)

docker-images: all
	$(Q)tools/deps.sh docker
	$(Q)CRUST=$(CURDIR)/$(BUILD)/crust DOCKER_LAB_DIR=$(DOCKER_LAB_DIR) docker/lab.sh images
